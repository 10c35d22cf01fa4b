/**
 * Process attribution, TypeScript side: the native join (native/attribution/) puts the owner in
 * each NEW record in both modes; here the mode is chosen (attribution.ts) and owners are enriched
 * (enrich.ts: units, containers, users; cgroupfs.ts: cgroup id -> path; exe.ts: the executable).
 */
export { cgroupFacts, cgroupPath, parsePasswd, podOf, Users, type PodQos } from './enrich.js';
export type { CgroupFacts } from './enrich.js';
