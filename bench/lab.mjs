// What every benchmark sets up the same way: a namespace that tracks connections, with a named
// counter of new flows (the kernel's own count), a 1 s CLOSE timeout so RST-closed connections are
// destroyed during the run, and removal on exit or Ctrl-C.
import { execFileSync } from 'node:child_process';

export const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: 'utf8', ...opts });

export function benchNamespace(prefix) {
  const name = `${prefix}-${process.pid}`;
  const inNs = (cmd, args, opts) => sh('ip', ['netns', 'exec', name, cmd, ...args], opts);
  const cleanup = () => {
    try {
      sh('ip', ['netns', 'del', name], { stdio: 'ignore' });
    } catch {
      /* gone */
    }
  };
  process.on('exit', cleanup);
  process.on('SIGINT', () => process.exit(130));
  sh('ip', ['netns', 'add', name]);
  sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  inNs('nft', ['-f', '-'], {
    input: 'add table inet b\nadd counter inet b newflows\nadd chain inet b out { type filter hook output priority 0; }\nadd rule inet b out ct state new counter name newflows\n',
  });
  // RST-closed connections sit in CLOSE for nf_conntrack_tcp_timeout_close (10 s by default).
  inNs('sysctl', ['-qw', 'net.netfilter.nf_conntrack_tcp_timeout_close=1']);
  const kernelNew = () => JSON.parse(inNs('nft', ['-j', 'list', 'counter', 'inet', 'b', 'newflows'])).nftables.find((x) => x.counter).counter.packets;
  return { name, inNs, kernelNew, cleanup };
}
