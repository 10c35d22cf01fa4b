/**
 * Process attribution: which process (and systemd unit or container) owns a flow's local socket.
 * See attributor.ts for the policy and the public contract, procfs.ts for the /proc index and
 * sockdiag.ts for the kernel lookups.
 */
export { Attributor, flowKey, groupKey, groupParts, processKey, processParts } from './attributor.js';
export type { Attribution, AttributorOptions, AttributorStats, DiagHandle, FlowRef, MissReason, Side } from './attributor.js';
export { ProcIndex, toProcessInfo } from './procfs.js';
export type { Owner, ProcIndexOptions, ProcIndexStats, ProcSource } from './procfs.js';
export { SockDiag, SOCKET_STATE, encodeQuery } from './sockdiag.js';
export type { SocketAnswer, SocketQuery, SockDiagOptions } from './sockdiag.js';
export { cgroupFacts, cgroupPath, parsePasswd, podOf, Users, type PodQos } from './enrich.js';
export type { CgroupFacts } from './enrich.js';
export { LocalAddresses } from './local.js';
