/**
 * The source ports SNAT and masquerade can give one (translated source, destination) pair: what
 * SNAT port use is judged against.
 *
 * The kernel (net/netfilter/nf_nat_core.c, get_unique_tuple and nf_nat_l4proto_unique_tuple) keeps
 * a connection's own source port when that is unique (and in the rule's range, if it has one), and
 * otherwise picks one from the range the rule gives (`masquerade to :40000-40099`, `snat to
 * 192.0.2.1:5000-5010`); a rule without ports picks from 1024-65535 (600-1023 or 1-511 for a
 * source port below 1024). `net.ipv4.ip_local_port_range` only says which ports the local clients
 * start from: it is not what the NAT runs out of.
 *
 * So the range is read from the nft ruleset of the namespace doing the NAT (`nft -j list ruleset`):
 * the smallest port range any snat or masquerade statement gives (a pair cannot be matched to its
 * rule, and the smallest runs out first), else the kernel's 1024-65535. Rules that nft cannot show
 * (iptables-legacy, or the `xt` expressions of iptables-nft) are not seen: the kernel default is
 * used, and `from` says so. The ruleset is read once, at start.
 */
import { execFileSync } from 'node:child_process';
import { inNetnsArgv, openNetns, type NetnsHandle } from '../util/netns.js';

export interface SnatPortRange {
  low: number;
  high: number;
  /** where the range comes from: an nft snat/masquerade rule, or the kernel's default */
  from: 'nft rule' | 'kernel default';
}

/** What snat and masquerade without a port range pick from (for source ports from 1024 up). */
export const KERNEL_SNAT_RANGE: SnatPortRange = { low: 1024, high: 65535, from: 'kernel default' };

/** Bound on the ruleset read from nft: a ruleset larger than this is not parsed. */
const MAX_RULESET_BYTES = 16 << 20;

/**
 * The range from `nft -j list ruleset` output: the smallest port range of any snat or masquerade
 * statement, else the kernel default. Pure.
 */
export function snatRangeOfRuleset(json: unknown): SnatPortRange {
  let best: SnatPortRange | undefined;
  const consider = (port: unknown): void => {
    let low: number | undefined;
    let high: number | undefined;
    if (typeof port === 'number') low = high = port;
    else if (port && typeof port === 'object' && Array.isArray((port as { range?: unknown }).range)) {
      const [a, b] = (port as { range: unknown[] }).range;
      if (typeof a === 'number' && typeof b === 'number') [low, high] = a <= b ? [a, b] : [b, a];
    }
    if (low === undefined || high === undefined || !(low >= 1 && high <= 65535)) return;
    if (!best || high - low < best.high - best.low) best = { low, high, from: 'nft rule' };
  };
  const items = (json as { nftables?: unknown })?.nftables;
  if (Array.isArray(items)) {
    for (const item of items) {
      const expr = (item as { rule?: { expr?: unknown } })?.rule?.expr;
      if (!Array.isArray(expr)) continue;
      for (const e of expr) {
        if (!e || typeof e !== 'object') continue;
        for (const kind of ['snat', 'masquerade'] as const) {
          const stmt = (e as Record<string, unknown>)[kind];
          if (stmt && typeof stmt === 'object') consider((stmt as { port?: unknown }).port);
        }
      }
    }
  }
  return best ?? { ...KERNEL_SNAT_RANGE };
}

/**
 * The SNAT port range of the watched namespace (our own when `netns` is absent). Another
 * namespace's ruleset is read by nft run under nsenter, entering the namespace through the
 * descriptor opened and checked here (util/netns.ts), never the path again. When nft cannot be run
 * or says nothing readable, the kernel default.
 */
export function readSnatPortRange(netns?: string): SnatPortRange {
  let handle: NetnsHandle | undefined;
  try {
    handle = netns === undefined ? undefined : openNetns(netns);
    const argv = ['nft', '-j', 'list', 'ruleset'];
    const [cmd, ...args] = handle ? inNetnsArgv(argv) : argv;
    const text = execFileSync(cmd, args, {
      encoding: 'utf8',
      timeout: 2000,
      maxBuffer: MAX_RULESET_BYTES,
      stdio: handle ? ['ignore', 'pipe', 'ignore', handle.fd] : ['ignore', 'pipe', 'ignore'],
    });
    return snatRangeOfRuleset(JSON.parse(text));
  } catch {
    return { ...KERNEL_SNAT_RANGE };
  } finally {
    handle?.close();
  }
}
