/**
 * Syslog transports: RFC 5424 messages over UDP (RFC 5426), TCP with octet-counting framing
 * (RFC 6587) and TLS (RFC 5425, same framing).
 *
 * What "sent" means here: for TCP/TLS the kernel accepted the bytes; syslog has no application
 * acknowledgement, so messages written just before a connection dies can be lost without an error
 * (RELP would be needed to know). UDP gives no delivery signal at all.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
import type { SinkRecord } from '../formats/common.js';
import { type SyslogHeaderOptions, octetFrameBatch, syslogMessage, truncateUtf8 } from '../formats/syslog.js';
import { type SendOutcome, type Transport, TransportError } from './types.js';
import { errorMessage } from './util.js';
import { setLongTimeout } from '../util/timers.js';
import { formatDurationValue } from '../config/units.js';

export interface SyslogTlsOptions {
  /** PEM contents (read at the edge from caFile / certFile / keyFile) */
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  /** name to verify the server certificate against (default: host when it is a name) */
  servername?: string;
  /** verify the server certificate (default true; turning it off is for tests only) */
  rejectUnauthorized?: boolean;
}

export interface SyslogTransportOptions {
  protocol: 'udp' | 'tcp' | 'tls';
  host: string;
  port: number;
  header?: SyslogHeaderOptions;
  /** messages longer than this are cut (default 2048 UDP, 8192 TCP/TLS = rsyslog's maxMessageSize) */
  maxMessageBytes?: number;
  tls?: SyslogTlsOptions;
  connectTimeoutMs?: number;
  /**
   * TCP/TLS: a batch not taken by the receiver's socket within this long (it accepted the
   * connection and stopped reading) fails: the connection is dropped, the batch retried on a new
   * one, spooled meanwhile, and lastError says so. Default 30 000.
   */
  sendTimeoutMs?: number;
  /** a new connection must stay open this long before anything is written on it (the server may
   * turn it away right after accepting it: see connect()); default 200 */
  acceptWaitMs?: number;
}

const TLS_HINTS: Record<string, string> = {
  SELF_SIGNED_CERT_IN_CHAIN: 'server certificate not trusted: set tls.ca_file to the CA that signed it',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'server certificate is self-signed and not trusted: set tls.ca_file',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'server certificate not trusted: set tls.ca_file to the CA that signed it',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'server certificate not trusted: set tls.ca_file to the CA that signed it',
  CERT_HAS_EXPIRED: 'server certificate has expired',
  ERR_TLS_CERT_ALTNAME_INVALID: 'server certificate does not match the host name (set tls.servername)',
};

export class SyslogTransport implements Transport {
  readonly description: string;
  readonly stats = { truncated: 0 };
  private readonly maxBytes: number;
  private socket: net.Socket | null = null;
  private connecting: Promise<net.Socket> | null = null;
  private udp: dgram.Socket | null = null;
  private closed = false;

  constructor(private readonly o: SyslogTransportOptions) {
    this.description = `syslog+${o.protocol}://${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}`;
    this.maxBytes = o.maxMessageBytes ?? (o.protocol === 'udp' ? 2048 : 8192);
  }

  encode(rec: SinkRecord, line: string): string {
    const msg = syslogMessage(rec, line, this.o.header);
    if (msg.length * 3 <= this.maxBytes || Buffer.byteLength(msg, 'utf8') <= this.maxBytes) return msg;
    this.stats.truncated++;
    return truncateUtf8(msg, this.maxBytes);
  }

  async send(batch: readonly string[], signal: AbortSignal): Promise<SendOutcome | void> {
    if (this.o.protocol === 'udp') return this.sendUdp(batch);
    const sock = await this.connect(signal);
    const buf = octetFrameBatch(batch);
    const timeoutMs = this.o.sendTimeoutMs ?? 30_000;
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (err?: TransportError): void => {
        if (settled) return;
        settled = true;
        deadline.clear();
        signal.removeEventListener('abort', onAbort);
        sock.removeListener('drain', onDrain);
        sock.removeListener('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onAbort = (): void => {
        sock.destroy();
        settle(new TransportError('aborted', { retryable: true }));
      };
      const onDrain = (): void => settle();
      const onClose = (): void => settle(new TransportError(`${this.description}: the connection closed during the send`, { retryable: true }));
      // A receiver that accepts and stops reading fills its socket, then ours: without a deadline
      // the send would wait for 'drain' for ever, delivering nothing and saying nothing.
      const deadline = setLongTimeout(() => {
        const taken = Math.max(0, buf.length - sock.writableLength);
        this.drop(sock);
        settle(
          new TransportError(
            `${this.description}: the receiver took ${taken} of ${buf.length} bytes in ${formatDurationValue(timeoutMs / 1000)} and stopped reading: reconnecting`,
            { retryable: true },
          ),
        );
      }, timeoutMs);
      signal.addEventListener('abort', onAbort, { once: true });
      sock.once('close', onClose);
      const ok = sock.write(buf, (err) => {
        if (err) {
          this.drop(sock);
          settle(new TransportError(`${this.description}: write failed: ${errorMessage(err)}`, { retryable: true }));
        } else if (ok) {
          settle();
        }
      });
      // the kernel buffer is full: the receiver is slow; the engine spools meanwhile
      if (!ok) sock.once('drain', onDrain);
    });
  }

  private sendUdp(batch: readonly string[]): Promise<void> {
    if (!this.udp) {
      this.udp = dgram.createSocket(net.isIPv6(this.o.host) ? 'udp6' : 'udp4');
      this.udp.on('error', () => {});
      this.udp.unref();
    }
    const sock = this.udp;
    return new Promise((resolve, reject) => {
      let left = batch.length;
      let failed: Error | null = null;
      for (const msg of batch) {
        sock.send(Buffer.from(msg, 'utf8'), this.o.port, this.o.host, (err) => {
          if (err) failed = err;
          if (--left === 0) {
            if (failed) reject(new TransportError(`${this.description}: ${errorMessage(failed)}`, { retryable: true }));
            else resolve();
          }
        });
      }
      if (batch.length === 0) resolve();
    });
  }

  private drop(sock: net.Socket): void {
    if (this.socket === sock) this.socket = null;
    sock.destroy();
  }

  private connect(signal: AbortSignal): Promise<net.Socket> {
    const s = this.socket;
    // a peer that closed its side can still accept one write into the void: reconnect instead
    if (s && !s.destroyed && s.writable && !s.readableEnded) return Promise.resolve(s);
    if (s) this.drop(s);
    if (this.connecting) return this.connecting;
    if (this.closed) return Promise.reject(new TransportError('transport closed', { retryable: false }));
    this.connecting = new Promise<net.Socket>((resolve, reject) => {
      const { host, port } = this.o;
      const timeoutMs = this.o.connectTimeoutMs ?? 10_000;
      let sock: net.Socket;
      const isTls = this.o.protocol === 'tls';
      if (isTls) {
        const t = this.o.tls ?? {};
        sock = tls.connect({
          host,
          port,
          ca: t.ca,
          cert: t.cert,
          key: t.key,
          servername: t.servername ?? (net.isIP(host) ? undefined : host),
          rejectUnauthorized: t.rejectUnauthorized ?? true,
        });
      } else {
        sock = net.connect({ host, port });
      }
      const timer = setTimeout(() => fail(new Error(`connect timed out after ${timeoutMs} ms`)), timeoutMs);
      const onAbort = () => fail(new Error('aborted'));
      signal.addEventListener('abort', onAbort, { once: true });
      let cleanup = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        sock.removeListener('error', fail);
      };
      function fail(err: Error) {
        cleanup();
        // a destroyed socket may still report an error: never an uncaught one
        sock.on('error', () => {});
        sock.destroy();
        reject(err);
      }
      sock.once('error', fail);
      sock.once(isTls ? 'secureConnect' : 'connect', () => {
        // Connected: the connect timeout is over (the wait below has its own timer).
        clearTimeout(timer);
        sock.setNoDelay(true);
        sock.setKeepAlive(true, 30_000);
        // servers do not talk back on syslog; reading keeps us told when they close
        sock.on('data', () => {});
        // A server can take the connection and then turn it away: rsyslog checks a TLS client's
        // certificate after the handshake (and in TLS 1.3 the client's side of the handshake ends
        // before the server has seen the certificate at all), and a full server closes new
        // sessions. Whatever were written first would be lost with no error, on every retry, so
        // the connection counts as open only once it has stayed open for a moment.
        const turnedAway = () => fail(new Error(this.turnedAwayReason()));
        sock.once('end', turnedAway);
        sock.once('close', turnedAway);
        const settle = setTimeout(() => {
          if (this.closed) return fail(new Error('transport closed'));
          cleanup();
          sock.on('error', () => this.drop(sock));
          sock.on('close', () => this.drop(sock));
          sock.on('end', () => this.drop(sock));
          this.socket = sock;
          resolve(sock);
        }, this.o.acceptWaitMs ?? 200);
        const cleanupConnect = cleanup;
        cleanup = () => {
          clearTimeout(settle);
          sock.removeListener('end', turnedAway);
          sock.removeListener('close', turnedAway);
          cleanupConnect();
        };
      });
    })
      .catch((err: unknown) => {
        throw new TransportError(this.connectError(err), { retryable: true, cause: err });
      })
      .finally(() => {
        this.connecting = null;
      });
    return this.connecting;
  }

  private turnedAwayReason(): string {
    if (this.o.protocol !== 'tls') return 'the server closed the connection right after accepting it (is it full, or not a syslog listener?)';
    return this.o.tls?.cert
      ? 'the server closed the TLS connection right after the handshake: it does not accept our client certificate (is tls.cert_file signed by a CA it trusts, with a name it permits?)'
      : 'the server closed the TLS connection right after the handshake: it probably requires a client certificate (set tls.cert_file and tls.key_file)';
  }

  private connectError(err: unknown): string {
    const code = (err as NodeJS.ErrnoException).code;
    const hint = code ? TLS_HINTS[code] : undefined;
    const what = this.o.protocol === 'tls' ? 'TLS connection' : 'connection';
    if (hint) return `${what} to ${this.description} refused: ${hint} (${code}: ${(err as Error).message})`;
    return `${what} to ${this.description} failed: ${errorMessage(err)}`;
  }

  async close(): Promise<void> {
    this.closed = true;
    const s = this.socket;
    this.socket = null;
    if (s && !s.destroyed) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          s.destroy();
          resolve();
        }, 1000);
        s.end(() => {
          clearTimeout(t);
          resolve();
        });
      });
      s.destroy();
    }
    this.udp?.close();
    this.udp = null;
  }

  reopen(): void {
    const s = this.socket;
    if (s) this.drop(s);
  }
}
