/**
 * Commands ctwatch suggests to an operator (alert hints, doctor's fixes): quoted for a shell, and
 * run in the right network namespace. Names come from the operator or the kernel, never trusted
 * to be shell-safe.
 */

/** Quotes for a shell only when needed, so the usual hint stays copy-pasteable and readable. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** `cmd` run inside `netns`: a name from `ip netns`, or a path such as /proc/PID/ns/net (as netnsPath reads it). */
export function inNetnsCommand(netns: string | undefined, cmd: string): string {
  if (!netns) return cmd;
  return netns.includes('/') ? `nsenter --net=${shellQuote(netns)} ${cmd}` : `ip netns exec ${shellQuote(netns)} ${cmd}`;
}
