#!/usr/bin/env node
// Address bytes -> text alone (src/source/address.ts): ns a lookup, best of 250 rounds over 4 096
// addresses, 80 % of them a few peers. Needs a build.   node bench/addresses.mjs [TREE, default .]
import { resolve } from 'node:path';
const tree = resolve(process.argv[2] ?? '.');
const { ipv4, ipv6 } = await import(tree + '/dist/source/address.js');
const b = new Uint8Array(64 * 1024);
// 80 % a few peers, 20 % many sources (like the refused.c load: one peer, ports vary)
let s = 1;
const rnd = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
const n = 4096;
for (let i = 0; i < n; i++) { const v = rnd() % 5 === 0 ? rnd() : 0x7f000001 + (rnd() & 7); b[16*i] = v>>>24; b[16*i+1]=(v>>>16)&255; b[16*i+2]=(v>>>8)&255; b[16*i+3]=v&255; }
function run4() { let t = 0; for (let i = 0; i < n; i++) t += ipv4(b, 16 * i).length; return t; }
const b6 = new Uint8Array(16 * n);
for (let i = 0; i < n; i++) { b6[16*i]=0x20; b6[16*i+1]=1; b6[16*i+2]=0xd; b6[16*i+3]=0xb8; b6[16*i+15] = rnd() % 5 === 0 ? rnd() & 255 : (rnd() & 3); b6[16*i+14] = rnd()%5===0 ? rnd()&255 : 0; }
function run6() { let t = 0; for (let i = 0; i < n; i++) t += ipv6(b6, 16 * i).length; return t; }
for (const [name, f] of [['v4', run4], ['v6', run6]]) {
  let best = Infinity;
  for (let r = 0; r < 300; r++) { const t0 = process.hrtime.bigint(); f(); const t = Number(process.hrtime.bigint() - t0) / n; if (r > 50 && t < best) best = t; }
  console.log(tree.split('/').pop(), name, best.toFixed(1), 'ns a lookup');
}
