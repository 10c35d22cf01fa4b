/**
 * One error type for everything an operator can get wrong or the system can refuse. `code` is
 * stable (documented in the README's troubleshooting table); `message` is one line that says what
 * to do; `exitCode` is what the CLI exits with.
 */
export class CtwatchError extends Error {
  readonly code: string;
  readonly errno?: number;
  readonly exitCode: number;

  constructor(code: string, message: string, options: { errno?: number; exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CtwatchError';
    this.code = code;
    this.errno = options.errno;
    this.exitCode = options.exitCode ?? 1;
  }
}

/** Exit codes, sysexits-style so scripts can tell a usage mistake from a missing privilege. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 64, // EX_USAGE: bad flag or argument
  dataErr: 65, // EX_DATAERR: malformed recording, rule or config file
  noInput: 66, // EX_NOINPUT: a file or namespace that does not exist
  unavailable: 69, // EX_UNAVAILABLE: kernel interface missing
  osErr: 71, // EX_OSERR: the system refused a resource (a thread at the task limit, memory)
  cantCreate: 73, // EX_CANTCREAT: output cannot be written
  ioErr: 74, // EX_IOERR
  noPerm: 77, // EX_NOPERM: missing capability
  config: 78, // EX_CONFIG
} as const;

/** Native errors carry a code; map them to exit codes once, here. */
export function fromNativeError(err: unknown): CtwatchError {
  if (err instanceof CtwatchError) return err;
  const e = err as { code?: string; errno?: number; message?: string };
  const code = typeof e?.code === 'string' ? e.code : 'ERR_SOCKET';
  const exitCode =
    code === 'ERR_NO_CAP_NET_ADMIN' || code === 'ERR_NETNS_PERMISSION'
      ? EXIT.noPerm
      : code === 'ERR_NETNS_NOT_FOUND' || code === 'ERR_NETNS'
        ? EXIT.noInput
        : code === 'ERR_NO_CTNETLINK'
          ? EXIT.unavailable
          : code === 'ERR_TASK_LIMIT' || code === 'ERR_NO_MEMORY' || code === 'ERR_NATIVE'
            ? EXIT.osErr
          : EXIT.failure;
  return new CtwatchError(code, e?.message ?? String(err), { errno: e?.errno, exitCode, cause: err });
}
