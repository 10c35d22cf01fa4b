/**
 * net.ipv4.ip_local_port_range of the namespace ctwatch watches: what SNAT port use is judged
 * against. /proc/sys/net shows the reader's own namespace, so another namespace's value is read by
 * nsenter (util-linux) entering only that network namespace, with a deadline.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { netnsPath } from '../util/netns.js';

const SYSCTL = '/proc/sys/net/ipv4/ip_local_port_range';

/** "40000\t40099\n" → { low: 40000, high: 40099 }; undefined when it is not two ports in order. */
export function parsePortRange(text: string): { low: number; high: number } | undefined {
  const m = /^\s*(\d{1,5})\s+(\d{1,5})\s*$/.exec(text);
  if (!m) return undefined;
  const low = Number(m[1]);
  const high = Number(m[2]);
  return low >= 1 && high <= 65535 && low <= high ? { low, high } : undefined;
}

/** The range, or undefined when it cannot be read (then SNAT shares are unknown, never guessed). */
export function readPortRange(netns?: string): { low: number; high: number } | undefined {
  try {
    const text = netns === undefined
      ? readFileSync(SYSCTL, 'utf8')
      : execFileSync('nsenter', [`--net=${netnsPath(netns)}`, '--', 'cat', SYSCTL], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] });
    return parsePortRange(text);
  } catch {
    return undefined;
  }
}
