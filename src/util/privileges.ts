/**
 * `--user NAME`: after the kernel sockets are open, become NAME and keep only CAP_NET_ADMIN on the
 * threads that still send netlink requests (native/privileges.cc says why that one). Files are not
 * handed over here, by path: their openers create them for NAME through the descriptor before the
 * switch (src/util/safe-file.ts).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { requireAddon } from './addon.js';
import { CtwatchError, EXIT } from './errors.js';

export interface Account {
  name: string;
  uid: number;
  gid: number;
}

export function lookupUser(name: string, passwd = '/etc/passwd'): Account {
  // `--user ""` (an unset variable in a unit file) must not quietly leave the daemon root.
  if (name.trim() === '') throw new CtwatchError('ERR_USER', `--user is empty: give the account to run as, e.g. --user ctwatch (or leave --user out to stay root)`, { exitCode: EXIT.usage });
  const text = existsSync(passwd) ? readFileSync(passwd, 'utf8') : '';
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length >= 4 && (f[0] === name || f[2] === name)) return { name: f[0], uid: Number(f[2]), gid: Number(f[3]) };
  }
  throw new CtwatchError('ERR_USER', `--user ${name}: no such user in ${passwd} (create one, e.g. useradd --system --no-create-home ctwatch)`, { exitCode: EXIT.noInput });
}

/** The capability sets of this process, from /proc (hex masks). */
export function capabilities(): { effective: bigint; permitted: bigint; uid: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const hex = (k: string) => BigInt(`0x${new RegExp(`^${k}:\\s+([0-9a-f]+)`, 'm').exec(status)![1]}`);
  return { effective: hex('CapEff'), permitted: hex('CapPrm'), uid: Number(/^Uid:\s+\d+\s+(\d+)/m.exec(status)![1]) };
}

/**
 * Becomes `account` (native/privileges.h has the steps). Says whether the capability bounding set
 * was emptied: that needs CAP_SETPCAP, which a unit may not grant; NO_NEW_PRIVS is set either way.
 */
export function dropPrivileges(account: Account): { boundingSetDropped: boolean } {
  if (process.getuid?.() !== 0) throw new CtwatchError('ERR_USER', '--user needs ctwatch to start as root (it opens the kernel sockets, then switches)', { exitCode: EXIT.noPerm });
  const addon = requireAddon<{ dropPrivileges(uid: number, gid: number): { boundingSetDropped: boolean } }>();
  try {
    return addon.dropPrivileges(account.uid, account.gid);
  } catch (err) {
    const e = err as { code?: string; message?: string };
    throw new CtwatchError(e.code ?? 'ERR_PRIVILEGES', `could not switch to user ${account.name}: ${e.message}`, { exitCode: EXIT.noPerm, cause: err });
  }
}

/**
 * Why `account` is a poor choice, or undefined. After the switch any process of the same account
 * may signal ctwatch and write the files handed to it (not trace it: the switch leaves it
 * non-dumpable); `nobody` is the account every unconfigured service falls back to.
 * `procRoot` is a parameter for the unit test only.
 */
export function sharedAccountNote(account: Account, procRoot = '/proc', self = process.pid): string | undefined {
  const others: number[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync(procRoot);
  } catch {
    // no /proc to look at: only the name can tell
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e) || Number(e) === self) continue;
    let status: string;
    try {
      status = readFileSync(`${procRoot}/${e}/status`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    const uids = /^Uid:\s+(\d+)\s+(\d+)/m.exec(status);
    if (uids && (Number(uids[1]) === account.uid || Number(uids[2]) === account.uid)) others.push(Number(e));
  }
  const fix = 'give ctwatch an account of its own: useradd --system --no-create-home ctwatch, then --user ctwatch';
  if (others.length > 0) {
    const shown = others.slice(0, 5).join(', ') + (others.length > 5 ? `, and ${others.length - 5} more` : '');
    return `--user ${account.name}: other processes run as this account (pid ${shown}) and can signal ctwatch and change the files handed to it; ${fix}`;
  }
  if (account.name === 'nobody' || account.uid === 65534) return `--user ${account.name}: this account is shared by every service that has none of its own; ${fix}`;
  return undefined;
}

/** The lines every command that switches users logs once it has: what it kept, and a warning for a shared account. */
export function announceAccount(log: Logger, account: Account, dropped: { boundingSetDropped: boolean } | undefined): void {
  log.info({ user: account.name, uid: account.uid, boundingSet: dropped?.boundingSetDropped ? 'empty' : 'kept (no CAP_SETPCAP; NO_NEW_PRIVS is set)' }, 'running as an unprivileged user, keeping CAP_NET_ADMIN only');
  const note = sharedAccountNote(account);
  if (note) log.warn(note);
}
