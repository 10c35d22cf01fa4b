/**
 * Network namespace files: `--netns NAME` (one `ip netns add` made, under /run/netns) or a path
 * such as /proc/PID/ns/net, and running a helper program inside one.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, statfsSync } from 'node:fs';

/** `--netns NAME` or a path: NAME is one `ip netns add` made, under /run/netns. */
export function netnsPath(netns: string): string {
  return netns.includes('/') ? netns : `/run/netns/${netns}`;
}

/** statfs f_type of nsfs (linux/magic.h NSFS_MAGIC) */
const NSFS_MAGIC = 0x6e736673;
/** O_PATH (asm-generic/fcntl.h; x86, arm, arm64, riscv, ppc): Node's fs.constants lacks it */
const O_PATH = 0o10000000;

/** An open network namespace file, checked: pass `fd` to a child, then close. */
export interface NetnsHandle {
  fd: number;
  close(): void;
}

/**
 * Opens a network namespace file once and checks the open file (not the path again): it must be
 * on nsfs. O_PATH never blocks (a FIFO without a writer) and has no side effects (a device). A
 * child then enters the namespace through this descriptor (inNetnsArgv), so a path swapped after
 * the check cannot send it elsewhere. Throws when the file is not a namespace.
 */
export function openNetns(netns: string): NetnsHandle {
  const path = netnsPath(netns);
  // libuv opens every file close-on-exec; a child gets it only through its stdio slot
  const fd = openSync(path, O_PATH);
  try {
    // statfs through our descriptor's /proc/self/fd link: the file we opened, whatever the path is now
    if (statfsSync(`/proc/self/fd/${fd}`).type !== NSFS_MAGIC) throw new Error(`${path} is not a network namespace file`);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  let open = true;
  return {
    fd,
    close: () => {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

/** The descriptor slot a child gets the namespace in (stdio: [in, out, err, handle.fd]). */
export const NETNS_CHILD_FD = 3;

/**
 * argv that runs `argv` in the namespace passed to the child as descriptor 3: nsenter (util-linux)
 * opens /proc/self/fd/3, its own copy of our descriptor, and enters only the network namespace.
 */
export function inNetnsArgv(argv: string[]): string[] {
  return ['nsenter', `--net=/proc/self/fd/${NETNS_CHILD_FD}`, '--', ...argv];
}

export interface HelperResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `argv` (in namespace `netns` when given, entered through one checked descriptor) and
 * collects its output, at most `maxBytes` of each stream, killed at `timeoutMs`. Rejects only when
 * the program cannot start (ENOENT), is killed at the deadline, or says more than `maxBytes`; a
 * non-zero exit is the caller's to read (grep exits 2 for a missing file).
 */
export function runHelper(netns: string | undefined, argv: string[], { timeoutMs, maxBytes }: { timeoutMs: number; maxBytes: number }): Promise<HelperResult> {
  let handle: NetnsHandle | undefined;
  try {
    handle = netns === undefined ? undefined : openNetns(netns);
  } catch (e) {
    return Promise.reject(e);
  }
  const [cmd, ...args] = handle ? inNetnsArgv(argv) : argv;
  return new Promise<HelperResult>((resolve, reject) => {
    // execFile drops descriptors past stderr: spawn is what hands the namespace over as fd 3
    const child = spawn(cmd, args, { stdio: handle ? ['ignore', 'pipe', 'pipe', handle.fd] : ['ignore', 'pipe', 'pipe'] });
    handle?.close(); // the child has its copy
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let failure: Error | undefined;
    const fail = (e: Error) => {
      failure ??= e;
      child.kill('SIGKILL');
    };
    const collect = (into: Buffer[]) => {
      let bytes = 0;
      return (d: Buffer) => {
        bytes += d.length;
        if (bytes > maxBytes) return fail(new Error(`${argv[0]} said more than ${maxBytes} bytes`));
        into.push(d);
      };
    };
    child.stdout!.on('data', collect(out));
    child.stderr!.on('data', collect(err));
    const timer = setTimeout(() => fail(new Error(`${argv[0]} did not finish within ${timeoutMs / 1000} s`)), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (failure) return reject(failure);
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}
