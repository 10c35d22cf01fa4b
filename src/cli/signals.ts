/**
 * Signals that arrive while ctwatch is still starting. Node leaves SIGHUP at its default action
 * (terminate) until a handler is installed, and `record` and `watch` install theirs only once the
 * sockets, files and rules are ready: a logrotate `postrotate` or `systemctl reload` in that
 * window killed the daemon. The launcher holds SIGHUP from its first line; the command that
 * handles it takes what was held (and acts on it once ready), every other command gives it back
 * the default action, re-raising one that already came.
 *
 * This module is loaded before anything else: it imports nothing.
 */

let held = 0;
let holding = false;
const hold = (): void => {
  held++;
};

/** From the launcher's first line: a SIGHUP is remembered instead of ending the process. */
export function holdEarlySignals(): void {
  if (holding) return;
  holding = true;
  process.on('SIGHUP', hold);
}

/** For a command with its own SIGHUP handler: stop holding; true when one came meanwhile. */
export function takeEarlySignals(): boolean {
  if (!holding) return false;
  holding = false;
  process.off('SIGHUP', hold);
  const came = held > 0;
  held = 0;
  return came;
}

/** For a command without one: SIGHUP ends the process again, as it would have. */
export function releaseEarlySignals(): void {
  if (takeEarlySignals()) process.kill(process.pid, 'SIGHUP');
}
