/** `--netns NAME` or a path: NAME is one `ip netns add` made, under /run/netns. */
export function netnsPath(netns: string): string {
  return netns.includes('/') ? netns : `/run/netns/${netns}`;
}
