/**
 * @module
 * Renewal of the node's client certificate (issue 13, "Renewal wire protocol"; docs/security.md).
 *
 * At {@link EdgeHubOptions.renewAtFraction} of the certificate's lifetime (± the jitter fraction,
 * drawn once per certificate), a new ECDSA P-256 key is made on the device, and its CSR is sent in
 * `POST /v1/renew` to the CloudHub EdgeHub uses, on a connection of its own: TLS verified against
 * `hub.caFile` (host name included), authenticated by the node's current certificate and key. The
 * answer is checked (our new key, our node, from a CA of `hub.caFile`, client auth, not expired)
 * before anything is written; then `node.key` and `node.crt` are replaced (below). The WebSocket
 * session is not touched: EdgeHub reads the files at every connect, so the next connection
 * presents the new certificate and the current one carries on with the old.
 *
 * A failed renewal changes nothing (the current key and certificate stay, the link stays) and is
 * retried after a delay that doubles per failure (equal jitter, from `renewRetryBaseMs` up to
 * `renewRetryMaxMs`, never more than half the time the certificate has left): the first failure
 * of a streak is logged, the others only at debug, and the success that ends it says how many
 * failed. A certificate that has expired — at start, or while renewals kept failing — is one error
 * line naming the recovery (`edgecore join --force …`), and renewal stops: CloudHub accepts an
 * expired certificate neither for the link nor for a renewal.
 *
 * Files: the new key and certificate are first written beside the current ones as `<file>.next`
 * (each atomically: temp file, fsync, rename, mode 0600; asynchronously, so a slow disk does not
 * stall the link), then renamed over them, key first, in one synchronous step. A crash
 * between the two renames leaves the new key with the old certificate; {@link completeInterruptedRenewal}
 * (run before EdgeHub reads the files) finishes that rename, and discards `.next` files of a renewal
 * that stopped earlier (the current pair was not touched then).
 *
 * The CSR encoder (@peculiar/asn1-*, ~90 KB) is imported only when a renewal is made, so an idle
 * EdgeCore does not evaluate it. Timers are unref'd and, with the clock and randomness, injectable.
 */
import { X509Certificate, createPrivateKey, generateKeyPair, randomBytes, type KeyObject } from 'node:crypto';
import { channel } from 'node:diagnostics_channel';
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import { backoff, type Backoff } from '../../shared/backoff/index.js';
import { CertExpiredError, CertRenewalError, errorCode, errorMessage } from '../../shared/errors/index.js';
import { caCertHash } from '../../shared/jointoken/index.js';
import type { Logger } from '../../shared/log/index.js';
import { NODE_CERT_CN_PREFIX, NODE_CERT_ORGANIZATION } from '../../shared/protocol/index.js';
import { FILE_MODE, syncDir } from '../join/files.js';
import { tlsRequest, type TlsRequest, type TlsResponse } from '../join/request.js';
import { checkRenewalOptions, defaultRenewalOptions, type EdgeHubOptions } from './options.js';
import { parseSubject, safeHash } from '../join/subject.js';

/** The renewal route on CloudHub's port (issue 13 contract). */
export const RENEW_PATH = '/v1/renew';
/** Suffix of the new key and certificate while a renewal writes them. */
export const PENDING_SUFFIX = '.next';

/** Published after each renewal: `{ serial, notAfter }` (tests and benchmarks observe it). */
const renewedChannel = channel('ledge:edgehub:certificate-renewed');

/** Longest delay one timer may have (setTimeout fires at once beyond 2^31-1 ms, ~24.8 days): longer waits are made of several. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Shortest retry cap, ms, however close the expiry. */
const MIN_RETRY_MS = 1000;
/** Extended key usage id-kp-clientAuth (RFC 5280). */
const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
/** Largest answer read from CloudHub (a certificate and the CA are ~2 KB). */
const MAX_RESPONSE_BYTES = 64 * 1024;
/** Most characters of CloudHub's message repeated in a log line. */
const MAX_SERVER_TEXT = 300;

const generateKeyPairAsync = promisify(generateKeyPair);

/** The timers the renewal uses (unit tests substitute fake ones). A handle's `unref()`, if it has one, is called. */
export interface RenewalTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: RenewalTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** The renewal's numbers: EdgeHub's options of the same names (documented and defaulted in ./options.ts). */
export type RenewalNumbers = Pick<EdgeHubOptions, keyof typeof defaultRenewalOptions>;

/** Options of {@link CertificateRenewal}. Numbers default as in EdgeHub's options (./options.ts). */
export interface CertificateRenewalOptions extends Partial<RenewalNumbers> {
  nodeName: string;
  /** The node's client certificate (PEM): read at start and for each renewal, replaced by each. */
  certFile: string;
  /** Its private key (PKCS#8 PEM), replaced together with it. */
  keyFile: string;
  /** CA bundle CloudHub is verified with, and that must have issued a renewed certificate. Without it nothing is renewed (one warning). */
  caFile?: string;
  /** EdgeCore's data directory (named in the re-join command of an expired certificate). */
  dataDir: string;
  /** The CloudHub endpoint to renew at (`wss://host:port[/path]`): EdgeHub's current one. */
  endpoint: () => string;
  log: Logger;
  /** Wall clock, ms since the epoch (certificate validity is wall-clock time). Default Date.now. */
  now?: () => number;
  /** Default: the global setTimeout/clearTimeout. */
  timers?: RenewalTimers;
  /** Random source in [0, 1) for the jitters. Default Math.random. */
  random?: () => number;
  /** Sends the HTTPS request. Default edge/join's tlsRequest. */
  request?: (r: TlsRequest) => Promise<TlsResponse>;
}

/** A certificate with its validity in ms. */
interface HeldCertificate {
  x509: X509Certificate;
  notBefore: number;
  notAfter: number;
}

/**
 * Keeps the node's client certificate renewed (see the module comment). EdgeHub owns one while it
 * runs: {@link start} with EdgeHub, {@link stop} when it stops.
 *
 * @example
 * const renewal = new CertificateRenewal({ nodeName, certFile, keyFile, caFile, dataDir, endpoint: () => url, log });
 * renewal.start();
 * // … later
 * await renewal.stop();
 */
export class CertificateRenewal {
  private readonly o: CertificateRenewalOptions & RenewalNumbers;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly timers: RenewalTimers;
  private readonly random: () => number;
  private readonly retry: Backoff;
  private cert: HeldCertificate | undefined;
  /** When the next attempt is due (wall clock, ms); undefined: none scheduled. */
  private dueAt: number | undefined;
  private timer: unknown;
  private running = false;
  private inFlight: Promise<boolean> | undefined;
  private abort: AbortController | undefined;
  /** Failed attempts since the last success (the first of a streak is logged). */
  private failures = 0;
  private expiredReported = false;
  /** Renewals made and attempts failed since construction. */
  readonly stats = { renewed: 0, failed: 0 };

  constructor(options: CertificateRenewalOptions) {
    this.o = { ...defaultRenewalOptions, ...options };
    checkRenewalOptions(this.o);
    this.log = options.log;
    this.now = options.now ?? Date.now;
    this.timers = options.timers ?? realTimers;
    this.random = options.random ?? Math.random;
    // No jitter here: the delay is jittered below, within the cap that also depends on the expiry.
    this.retry = backoff({ baseMs: this.o.renewRetryBaseMs, maxMs: this.o.renewRetryMaxMs });
  }

  /** When the next renewal attempt is due (ms since the epoch), if one is scheduled. */
  get nextAttemptAt(): number | undefined {
    return this.dueAt;
  }

  /**
   * Reads the certificate and schedules its renewal. An expired certificate is reported (one error
   * line with the re-join command) and nothing is scheduled; so is a missing `caFile` (a warning).
   */
  start(): void {
    if (this.running) return;
    this.running = true;
    let cert: HeldCertificate;
    try {
      cert = readCertificate(this.o.certFile);
    } catch (err) {
      this.log.warn(`the client certificate is not renewed automatically: ${errorMessage(err)}`, { code: CertRenewalError.code });
      return;
    }
    this.cert = cert;
    if (this.now() >= cert.notAfter) {
      this.reportExpired(cert);
      return;
    }
    if (!this.o.caFile) {
      this.log.warn(
        `the client certificate is not renewed automatically: hub.caFile is not set (a renewal verifies CloudHub with it); it expires at ${iso(cert.notAfter)}, then the node must re-join`,
        { code: CertRenewalError.code },
      );
      return;
    }
    this.scheduleFor(cert);
  }

  /** Stops: no more attempts; one in flight is aborted (nothing is written then) and awaited. */
  async stop(): Promise<void> {
    this.running = false;
    this.dueAt = undefined;
    if (this.timer !== undefined) {
      this.timers.clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.abort?.abort(new CertRenewalError('EdgeCore is stopping'));
    await this.inFlight;
  }

  /**
   * One renewal attempt now (the scheduled ones call it too; a call while one runs joins it), then,
   * while started, the next one scheduled: the new certificate's renewal, or a retry. Resolves true
   * when the files were replaced, false when it failed (logged); never rejects.
   */
  renewNow(): Promise<boolean> {
    this.inFlight ??= this.attempt().then((ok) => {
      this.inFlight = undefined;
      this.afterAttempt(ok);
      return ok;
    });
    return this.inFlight;
  }

  /** Resolves once no attempt is in flight (what follows it is scheduled by then). */
  async idle(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }

  /** The next attempt at `renewAtFraction` ± jitter of `cert`'s lifetime. */
  private scheduleFor(cert: HeldCertificate): void {
    const life = cert.notAfter - cert.notBefore;
    const fraction = this.o.renewAtFraction + (2 * this.random() - 1) * this.o.renewJitterFraction;
    this.dueAt = cert.notBefore + life * fraction;
    this.log.debug(`client certificate renewal scheduled at ${iso(this.dueAt)}`, { notAfter: iso(cert.notAfter) });
    this.arm();
  }

  /** A timer toward `dueAt` (at most {@link MAX_TIMER_MS}: a longer wait wakes up and re-arms). */
  private arm(): void {
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.running || this.dueAt === undefined) return;
    const delay = Math.min(Math.max(0, this.dueAt - this.now()), MAX_TIMER_MS);
    const handle = this.timers.setTimeout(() => this.wake(), delay);
    // A renewal never keeps EdgeCore's process alive on its own.
    (handle as { unref?: () => void } | null)?.unref?.();
    this.timer = handle;
  }

  private wake(): void {
    this.timer = undefined;
    if (!this.running || this.dueAt === undefined) return;
    // Not due yet: a chunk of a long wait, or the clock was set back.
    if (this.now() < this.dueAt) return this.arm();
    this.dueAt = undefined;
    void this.renewNow();
  }

  /** Schedules what follows an attempt: the next certificate's renewal, a retry, or nothing (expired). */
  private afterAttempt(ok: boolean): void {
    if (!this.running || !this.cert) return;
    if (ok) return this.scheduleFor(this.cert);
    const left = this.cert.notAfter - this.now();
    if (left <= 0) {
      this.reportExpired(this.cert);
      return;
    }
    const cap = Math.min(this.retry.next(), Math.max(MIN_RETRY_MS, left / 2));
    // Equal jitter: at least half the cap, so retries back off even on unlucky draws.
    this.dueAt = this.now() + cap / 2 + this.random() * (cap / 2);
    this.arm();
  }

  private async attempt(): Promise<boolean> {
    const abort = new AbortController();
    this.abort = abort;
    try {
      const cert = await this.exchange(AbortSignal.any([abort.signal, AbortSignal.timeout(this.o.renewTimeoutMs)]));
      this.cert = cert;
      this.stats.renewed++;
      this.retry.reset();
      const after = this.failures ? ` after ${this.failures} failed attempt${this.failures === 1 ? '' : 's'}` : '';
      this.failures = 0;
      this.log.info(`renewed the client certificate${after}; the current link keeps its session, the next connection presents the new certificate`, {
        serial: cert.x509.serialNumber,
        notAfter: iso(cert.notAfter),
      });
      if (renewedChannel.hasSubscribers) renewedChannel.publish({ serial: cert.x509.serialNumber, notAfter: cert.notAfter });
      return true;
    } catch (err) {
      if (abort.signal.aborted && !this.running) return false;
      this.stats.failed++;
      this.failures++;
      const current = this.cert ? ` (valid until ${iso(this.cert.notAfter)})` : '';
      if (this.failures === 1) {
        this.log.warn(
          `client certificate renewal failed: ${errorMessage(err)}; the current certificate${current} and the link stay as they are; retrying with backoff (not logged again until a renewal succeeds)`,
          { code: errorCode(err) },
        );
      } else {
        this.log.debug(`client certificate renewal failed again (${this.failures} in a row): ${errorMessage(err)}`, { code: errorCode(err) });
      }
      return false;
    } finally {
      if (this.abort === abort) this.abort = undefined;
    }
  }

  /** The exchange with CloudHub and, once its answer checked out, the files. Throws CertRenewalError. */
  private async exchange(signal: AbortSignal): Promise<HeldCertificate> {
    const o = this.o;
    if (!o.caFile) throw new CertRenewalError('hub.caFile is not set: CloudHub cannot be verified for a renewal');
    let url: URL;
    try {
      url = new URL(o.endpoint());
    } catch {
      throw new CertRenewalError(`the CloudHub endpoint ${JSON.stringify(o.endpoint())} is not a URL`);
    }
    if (url.protocol !== 'wss:') throw new CertRenewalError(`the CloudHub endpoint ${url.origin} is not wss://: a renewal needs TLS`);
    const target = { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: url.port ? Number(url.port) : 443, origin: `https://${url.host}` };
    const caPem = readText(o.caFile, 'hub.caFile');
    const cas = pemCertificates(caPem, o.caFile);
    const clientCert = { cert: readText(o.certFile, 'client certificate'), key: readText(o.keyFile, 'client key') };
    const { privateKey, publicKey } = await generateKeyPairAsync('ec', { namedCurve: 'P-256' });
    // Loaded here, not at EdgeCore's start: only a renewal (or a join) pays for the ASN.1 encoder.
    const { createCsr } = await import('../join/csr.js');
    const body = JSON.stringify({ csr: createCsr(o.nodeName, privateKey, publicKey) });
    let res: TlsResponse;
    try {
      // Stopped meanwhile: nothing is sent.
      signal.throwIfAborted();
      res = await (o.request ?? tlsRequest)({
        target,
        method: 'POST',
        path: RENEW_PATH,
        headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
        body,
        verify: { ca: caPem, hash: caCertHash(cas[0]!.toString()) },
        clientCert,
        withheld: 'the CSR',
        maxBytes: MAX_RESPONSE_BYTES,
        signal,
      });
    } catch (err) {
      const timedOut = signal.aborted && (signal.reason as { name?: unknown } | undefined)?.name === 'TimeoutError';
      throw new CertRenewalError(timedOut ? `CloudHub at ${target.origin} did not answer the renewal within ${o.renewTimeoutMs} ms` : errorMessage(err), { cause: err });
    }
    if (res.status !== 200) throw refusal(res, target.origin);
    const issued = this.checkIssued(res, cas, publicKey);
    if (signal.aborted) throw new CertRenewalError(`the renewal was abandoned: ${errorMessage(signal.reason)}`);
    await writeCredentials(o.certFile, o.keyFile, issued.x509.toString(), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    return issued;
  }

  /** The certificate of a 200 answer, checked: for the new key and this node, from a CA of caFile, client auth, not expired. */
  private checkIssued(res: TlsResponse, cas: X509Certificate[], publicKey: KeyObject): HeldCertificate {
    let answer: { certificate?: unknown; ca?: unknown };
    try {
      answer = JSON.parse(res.body.toString('utf8')) as typeof answer;
    } catch (err) {
      throw new CertRenewalError('CloudHub answered the renewal with a body that is not JSON', { cause: err });
    }
    if (answer === null || typeof answer !== 'object' || typeof answer.certificate !== 'string')
      throw new CertRenewalError('CloudHub answered the renewal without a "certificate" (PEM)');
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(answer.certificate);
    } catch (err) {
      throw new CertRenewalError('CloudHub answered a "certificate" that cannot be parsed', { cause: err });
    }
    if (typeof answer.ca === 'string') {
      const hash = safeHash(answer.ca);
      if (!cas.some((c) => safeHash(c.toString()) === hash)) {
        throw new CertRenewalError(`CloudHub answered a CA that is not in hub.caFile ${this.o.caFile}: after a CA rotation the node re-joins (edgecore join --force)`);
      }
    }
    if (!x509.publicKey.equals(publicKey)) throw new CertRenewalError("the certificate CloudHub issued is not for the node's new key");
    const cn = `${NODE_CERT_CN_PREFIX}${this.o.nodeName}`;
    const subject = parseSubject(x509.subject);
    if (subject.CN?.length !== 1 || subject.CN[0] !== cn || !subject.O?.includes(NODE_CERT_ORGANIZATION)) {
      throw new CertRenewalError(`the certificate CloudHub issued names ${JSON.stringify(x509.subject.replace(/\n/g, ', '))}, not CN=${cn}, O=${NODE_CERT_ORGANIZATION}`);
    }
    if (!cas.some((c) => x509.checkIssued(c) && x509.verify(c.publicKey)))
      throw new CertRenewalError(`the certificate CloudHub issued is not signed by a CA of hub.caFile ${this.o.caFile}`);
    if (x509.keyUsage && !x509.keyUsage.includes(EKU_CLIENT_AUTH)) throw new CertRenewalError('the certificate CloudHub issued is not for client authentication');
    const held = held509(x509);
    if (held.notAfter <= this.now()) throw new CertRenewalError(`the certificate CloudHub issued expired at ${iso(held.notAfter)} (is this device's clock right?)`);
    return held;
  }

  /** The one error line of an expired certificate, with the recovery. */
  private reportExpired(cert: HeldCertificate): void {
    this.dueAt = undefined;
    if (this.expiredReported) return;
    this.expiredReported = true;
    const err = new CertExpiredError(expiredCertificateMessage(this.o, cert.notAfter));
    this.log.error(err.message, { code: err.code, certFile: this.o.certFile, notAfter: iso(cert.notAfter) });
  }
}

/**
 * What an expired certificate means and how to recover, in one line: CloudHub refuses the node,
 * and only a re-join with a new token gets it a certificate.
 */
export function expiredCertificateMessage(o: { certFile: string; nodeName: string; dataDir: string; endpoint: () => string }, notAfter: number): string {
  let cloud = '<https://cloudhub:port>';
  try {
    cloud = `https://${new URL(o.endpoint()).host}`;
  } catch {
    // An endpoint that is no URL: the placeholder stays.
  }
  return (
    `the client certificate ${o.certFile} expired at ${iso(notAfter)}: CloudHub refuses this node until it joins again. ` +
    `Re-join: stop EdgeCore, get a token (ledge token create), then run edgecore join --force --cloud ${cloud} --token <token> --node-name ${o.nodeName} --data-dir ${o.dataDir}`
  );
}

/**
 * Replaces `keyFile` and `certFile` with a new pair (see the module comment): each first written
 * whole as `<file>.next` (temp file, fsync, rename, mode 0600), then renamed over the current one,
 * key first; the directories synced. The writes and fsyncs are asynchronous (an SD card's fsync
 * can take a second, and the link's keepalives must not wait for it); the two renames are one
 * synchronous step, so EdgeHub, on the same thread, never reads the new key with the old certificate.
 */
export async function writeCredentials(certFile: string, keyFile: string, certPem: string, keyPem: string): Promise<void> {
  const keyNext = `${keyFile}${PENDING_SUFFIX}`;
  const certNext = `${certFile}${PENDING_SUFFIX}`;
  await writeFileDurably(keyNext, keyPem);
  await writeFileDurably(certNext, certPem);
  await syncDirs(certFile, keyFile);
  renameSync(keyNext, keyFile);
  // A crash here: the new key with the old certificate; completeInterruptedRenewal() finishes.
  renameSync(certNext, certFile);
  await syncDirs(certFile, keyFile);
}

/** `path` replaced by `data`, mode 0600: a fresh temp file ('wx': never one someone placed there), written, fsynced, renamed. */
async function writeFileDurably(path: string, data: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const file = await open(tmp, 'wx', FILE_MODE);
  try {
    try {
      await file.writeFile(data);
      // The umask may have narrowed the mode, never widened it; set it exactly anyway.
      await file.chmod(FILE_MODE);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Finishes or discards a renewal that stopped while writing (run before the files are read): when
 * `<certFile>.next` is the certificate of the current key (the key was renamed, the certificate not
 * yet), it is renamed into place; any other `.next` file is from a renewal that stopped before
 * touching the current pair (or from before a re-join) and is removed. Returns what it did.
 */
export function completeInterruptedRenewal(certFile: string, keyFile: string, log: Logger): 'completed' | 'discarded' | 'none' {
  const keyNext = `${keyFile}${PENDING_SUFFIX}`;
  const certNext = `${certFile}${PENDING_SUFFIX}`;
  if (!existsSync(certNext) && !existsSync(keyNext)) return 'none';
  let matches = false;
  try {
    matches = existsSync(certNext) && new X509Certificate(readFileSync(certNext)).checkPrivateKey(createPrivateKey(readFileSync(keyFile)));
  } catch {
    matches = false;
  }
  if (matches) {
    renameSync(certNext, certFile);
    rmSync(keyNext, { force: true });
    for (const dir of new Set([dirname(certFile), dirname(keyFile)])) syncDir(dir);
    log.info(`completed a client certificate renewal that was interrupted: ${certFile} now matches ${keyFile}`);
    return 'completed';
  }
  rmSync(keyNext, { force: true });
  rmSync(certNext, { force: true });
  log.info(`removed the files of a client certificate renewal that was interrupted before it replaced ${certFile}`);
  return 'discarded';
}

/** Makes the renames in the files' directories durable. */
async function syncDirs(...files: string[]): Promise<void> {
  for (const dir of new Set(files.map((f) => dirname(f)))) {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}

/** The error for a non-200 answer: CloudHub's `{code, message}` surfaced. */
function refusal(res: TlsResponse, origin: string): CertRenewalError {
  let serverCode: string | undefined;
  let message: string | undefined;
  try {
    const v: unknown = JSON.parse(res.body.toString('utf8'));
    if (v !== null && typeof v === 'object') {
      const { code, message: m } = v as { code?: unknown; message?: unknown };
      if (typeof code === 'string') serverCode = oneLine(code);
      if (typeof m === 'string') message = oneLine(m);
    }
  } catch {
    message = oneLine(res.body.toString('utf8')) || undefined;
  }
  const retry = res.status === 429 && typeof res.headers['retry-after'] === 'string' ? ` (retry after ${oneLine(res.headers['retry-after'])} s)` : '';
  const missing = res.status === 404 ? ` (this CloudHub at ${origin} serves no ${RENEW_PATH}: is it an older CloudCore, or are its certificates the operator's?)` : '';
  return new CertRenewalError(`CloudHub refused the renewal (HTTP ${res.status}${serverCode ? ` ${serverCode}` : ''})${message ? `: ${message}` : ''}${retry}${missing}`, {
    status: res.status,
    ...(serverCode ? { serverCode } : {}),
  });
}

function readCertificate(file: string): HeldCertificate {
  const pem = readText(file, 'client certificate');
  try {
    return held509(new X509Certificate(pem));
  } catch (err) {
    throw new CertRenewalError(`the client certificate ${file} cannot be parsed: ${errorMessage(err)}`, { cause: err });
  }
}

function held509(x509: X509Certificate): HeldCertificate {
  return { x509, notBefore: Date.parse(x509.validFrom), notAfter: Date.parse(x509.validTo) };
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CertRenewalError(`cannot read the ${what} ${file}: ${errorMessage(err)}`, { cause: err });
  }
}

/** Every certificate of a PEM bundle (at least one). */
function pemCertificates(pem: string, file: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  try {
    const out = blocks.map((b) => new X509Certificate(b));
    if (out.length) return out;
  } catch (err) {
    throw new CertRenewalError(`hub.caFile ${file} holds a certificate that cannot be parsed: ${errorMessage(err)}`, { cause: err });
  }
  throw new CertRenewalError(`hub.caFile ${file} holds no PEM certificate`);
}

function iso(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms);
}

function oneLine(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters from the server are what is removed
  const flat = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return flat.length > MAX_SERVER_TEXT ? `${flat.slice(0, MAX_SERVER_TEXT)}…` : flat;
}
