/**
 * @module
 * `edgecore join`: admits this device to a CloudCore with a join token (issue 13), as
 * `kubeadm join --discovery-token-ca-cert-hash` does for a kubelet.
 *
 * 1. Checks the node name (DNS-1123 subdomain) and the token (`<id>.<secret>@sha256:<hex>`); a node
 *    that holds a certificate already is refused unless `force`.
 * 2. Makes an ECDSA P-256 key on the device (it never leaves it) and a PKCS#10 CSR for it.
 * 3. `GET /v1/ca.crt` over TLS without verification, then pins: the SHA-256 of the CA's
 *    SubjectPublicKeyInfo must be the token's hash. A mismatch refuses the cloud, nothing else is sent.
 * 4. `POST /v1/join` with `Authorization: Bearer <id>.<secret>`, over a new TLS connection verified
 *    against that CA alone (edge/join/request.ts: the token is written only after the handshake verified).
 * 5. Checks the certificate: our public key, `CN=system:node:<nodeName>, O=system:nodes`, signed by
 *    the pinned CA, client auth, not expired.
 * 6. Writes `<dataDir>/pki/{node.key,ca.crt,node.crt}` and `<dataDir>/edgecore.json` (mode 0600,
 *    `pki/` 0700), each atomically. Nothing is written before step 5 passed, so a failed re-join
 *    (`force`) leaves the node's working identity as it was.
 *
 * The data directory's lock is held throughout: a running EdgeCore's certificate is never swapped
 * under it. Wire protocol and names: the issue 13 contract (docs/security.md once written).
 */
import { X509Certificate, generateKeyPair, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join as joinPath, resolve } from 'node:path';
import { promisify } from 'node:util';
import { AlreadyJoinedError, CaHashMismatchError, ConfigError, JoinError, JoinRefusedError, JoinTokenMalformedError, TimeoutError } from '../../shared/errors/index.js';
import { caCertHash, formatBearer, isValidNodeName, parseJoinToken } from '../../shared/jointoken/index.js';
import { lockDataDir } from '../../shared/lock/index.js';
import { ensurePrivateDir, syncDir, writeFileAtomic } from './files.js';
import { resolveJoinOptions, type JoinInput, type JoinOptions } from './options.js';
import { tlsRequest, type CloudTarget, type TlsResponse } from './request.js';
import { parseSubject, safeHash } from './subject.js';

/** The join routes on CloudHub's port (issue 13 contract). */
export const JOIN_PATHS = { ca: '/v1/ca.crt', join: '/v1/join' } as const;

/** The files of a joined node, under its data directory. */
export const JOIN_FILES = { pkiDir: 'pki', key: 'pki/node.key', cert: 'pki/node.crt', ca: 'pki/ca.crt', config: 'edgecore.json' } as const;

/** What a join wrote. Paths are absolute. */
export interface JoinResult {
  nodeName: string;
  /** CloudHub's link URL as written to the config: `wss://host:port`. */
  cloud: string;
  /** The pin the CA matched: `sha256:<hex>`. */
  caHash: string;
  /** EdgeCore's config file: start EdgeCore with `--config <configFile>`. */
  configFile: string;
  keyFile: string;
  certFile: string;
  caFile: string;
  /** When the node's certificate expires. */
  notAfter: Date;
}

/** Extended key usage id-kp-clientAuth (RFC 5280). */
const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
/** Most characters of a server's message repeated in an error. */
const MAX_SERVER_TEXT = 500;

const generateKeyPairAsync = promisify(generateKeyPair);

/**
 * Joins this node to CloudCore: see the module comment for the steps. Rejects with
 * ConfigError (bad URL or node name), JoinTokenMalformedError, AlreadyJoinedError,
 * CaHashMismatchError, JoinRefusedError (CloudHub's 4xx/5xx, with its message), JoinError
 * (transport, TLS verification, an unusable answer), TimeoutError, DataDirLockedError.
 *
 * @example
 * const r = await join({ cloud: 'wss://hub.example:10000', token: 'k3x9qa.0f1e…@sha256:3f1c…', nodeName: 'pi-1', dataDir: '/var/lib/ledge' });
 * // then: edgecore --config r.configFile
 */
export async function join(input: JoinInput): Promise<JoinResult> {
  const o = resolveJoinOptions(input);
  const { target, wss } = parseCloudUrl(o.cloud);
  if (!isValidNodeName(o.nodeName))
    throw new ConfigError(`node name ${JSON.stringify(o.nodeName)} is not a DNS-1123 subdomain (lower-case a-z, 0-9, "-" and ".", at most 253 characters)`);
  const token = parseJoinToken(o.token);
  if (!token.caHash) {
    throw new JoinTokenMalformedError(
      'the join token has no CA hash (<id>.<secret>@sha256:<hex>): without it CloudHub cannot be verified; use the whole token `ledge token create` printed',
    );
  }
  const caHash = token.caHash;
  const dataDir = resolve(o.dataDir);
  const file = (f: string) => joinPath(dataDir, f);
  const paths = {
    pkiDir: file(JOIN_FILES.pkiDir),
    keyFile: file(JOIN_FILES.key),
    certFile: file(JOIN_FILES.cert),
    caFile: file(JOIN_FILES.ca),
    configFile: file(JOIN_FILES.config),
  };
  if (!o.force && existsSync(paths.certFile)) {
    throw new AlreadyJoinedError(`this node has joined already (${paths.certFile} exists): join again with --force to replace its key and certificate`);
  }
  // A new data directory is private too; an existing one keeps its mode (only pki/ must be 0700).
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  ensurePrivateDir(paths.pkiDir);
  const previous = readConfig(paths.configFile);
  const lock = lockDataDir(dataDir, { owner: 'edgecore join', log: o.log });
  let step = 'generating the key';
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(new TimeoutError(`CloudHub at ${target.origin} did not answer within ${o.timeoutMs} ms (${step})`)), o.timeoutMs);
  const signal = o.signal ? AbortSignal.any([o.signal, deadline.signal]) : deadline.signal;
  try {
    const { privateKey, publicKey } = await generateKeyPairAsync('ec', { namedCurve: 'P-256' });
    // Loaded here, not at EdgeCore's start: only a join pays for the ASN.1 encoder.
    const { createCsr } = await import('./csr.js');
    const csr = createCsr(o.nodeName, privateKey, publicKey);

    step = `GET ${JOIN_PATHS.ca}`;
    const ca = await fetchPinnedCa(target, caHash, o, signal);
    o.log.debug('CloudHub CA matches the token', { caHash, cloud: target.origin });

    step = `POST ${JOIN_PATHS.join}`;
    const body = JSON.stringify({ nodeName: o.nodeName, csr });
    const res = await tlsRequest({
      target,
      method: 'POST',
      path: JOIN_PATHS.join,
      headers: { authorization: `Bearer ${formatBearer(token)}`, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
      body,
      verify: { ca: ca.toString(), hash: caHash },
      maxBytes: o.maxResponseBytes,
      signal,
    });
    if (res.status !== 200) throw refused(res);
    const cert = checkIssued(res, ca, caHash, publicKey, o);

    step = 'writing the files';
    writeFileAtomic(paths.keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    writeFileAtomic(paths.caFile, ca.toString());
    writeFileAtomic(paths.certFile, cert.toString());
    syncDir(paths.pkiDir);
    writeFileAtomic(paths.configFile, `${JSON.stringify(edgeConfig(previous, wss, o.nodeName, dataDir, paths, o), null, 2)}\n`);
    syncDir(dataDir);
    const notAfter = new Date(cert.validTo);
    o.log.info('joined', { node: o.nodeName, cloud: wss, token: token.id, notAfter: notAfter.toISOString() });
    return { nodeName: o.nodeName, cloud: wss, caHash, configFile: paths.configFile, keyFile: paths.keyFile, certFile: paths.certFile, caFile: paths.caFile, notAfter };
  } finally {
    clearTimeout(timer);
    lock.release();
  }
}

/** CloudHub's address from `wss://host:port` or `https://host:port`, and the link URL for the config. */
function parseCloudUrl(cloud: string): { target: CloudTarget; wss: string } {
  let u: URL;
  try {
    u = new URL(cloud);
  } catch {
    throw new ConfigError(`the cloud URL ${JSON.stringify(cloud)} is not a URL: expected wss://host:port or https://host:port`);
  }
  if (u.protocol !== 'wss:' && u.protocol !== 'https:') throw new ConfigError(`the cloud URL must be wss:// or https:// (joining needs TLS), got ${u.protocol}//`);
  if (u.username || u.password) throw new ConfigError('the cloud URL must not carry a user name or password');
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = u.port ? Number(u.port) : 443;
  // The link URL keeps a path the operator gave with wss:// (EdgeHub adds its default path to a bare one).
  const path = u.protocol === 'wss:' && u.pathname !== '/' ? u.pathname : '';
  return { target: { host, port, origin: `https://${u.host}` }, wss: `wss://${u.host}${path}` };
}

/** GET /v1/ca.crt without verification, and the pin check: the one CA certificate whose SPKI hash is `caHash`. */
async function fetchPinnedCa(target: CloudTarget, caHash: string, o: JoinOptions, signal: AbortSignal): Promise<X509Certificate> {
  const where = `${target.origin}${JOIN_PATHS.ca}`;
  const res = await tlsRequest({ target, method: 'GET', path: JOIN_PATHS.ca, maxBytes: o.maxResponseBytes, signal });
  if (res.status !== 200) {
    throw new JoinError(
      `GET ${where} answered HTTP ${res.status}${serverText(res.body) ? `: ${serverText(res.body)}` : ''} (is ${target.origin} a Ledge CloudHub that admits nodes?)`,
    );
  }
  const pem = res.body.toString('utf8');
  const count = pem.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0;
  // One certificate: a bundle would let a pinned CA smuggle in others to trust.
  if (count !== 1) throw new JoinError(`GET ${where} answered ${count} PEM certificates; expected exactly one (the CA)`);
  let ca: X509Certificate;
  try {
    ca = new X509Certificate(pem);
  } catch (err) {
    throw new JoinError(`GET ${where} answered a certificate that cannot be parsed`, { cause: err });
  }
  const got = caCertHash(pem);
  if (got !== caHash) {
    throw new CaHashMismatchError(
      `the CA of CloudHub at ${target.origin} has hash ${got}, but the join token pins ${caHash}: refusing this cloud (the token was not sent). Check the cloud URL, or get a token from this CloudCore (\`ledge token create\` prints its hash)`,
    );
  }
  if (!ca.ca) throw new JoinError(`the certificate of GET ${where} matches the pin but is not a CA certificate (basicConstraints CA:FALSE)`);
  return ca;
}

/** The error for a non-200 answer to POST /v1/join: CloudHub's `{code, message}` surfaced. */
function refused(res: TlsResponse): JoinRefusedError {
  let serverCode: string | undefined;
  let serverMessage: string | undefined;
  try {
    const v: unknown = JSON.parse(res.body.toString('utf8'));
    if (v !== null && typeof v === 'object') {
      const { code, message } = v as { code?: unknown; message?: unknown };
      if (typeof code === 'string') serverCode = oneLine(code);
      if (typeof message === 'string') serverMessage = oneLine(message);
    }
  } catch {
    // Not JSON (a proxy's page): its text stands in for the message.
  }
  serverMessage ??= serverText(res.body) || undefined;
  const retry = res.status === 429 && typeof res.headers['retry-after'] === 'string' ? ` (retry after ${oneLine(res.headers['retry-after'])} s)` : '';
  const head = `CloudHub refused the join (HTTP ${res.status}${serverCode ? ` ${serverCode}` : ''})`;
  return new JoinRefusedError(`${head}${serverMessage ? `: ${serverMessage}` : ''}${retry}`, {
    status: res.status,
    ...(serverCode ? { serverCode } : {}),
    ...(serverMessage ? { serverMessage } : {}),
  });
}

/** The certificate of a 200 answer, checked: for our key and node, from the pinned CA, for client auth, not expired. */
function checkIssued(res: TlsResponse, ca: X509Certificate, caHash: string, publicKey: KeyObject, o: JoinOptions): X509Certificate {
  let answer: { certificate?: unknown; ca?: unknown };
  try {
    answer = JSON.parse(res.body.toString('utf8')) as typeof answer;
  } catch (err) {
    throw new JoinError('CloudHub answered the join with a body that is not JSON', { cause: err });
  }
  if (answer === null || typeof answer !== 'object' || typeof answer.certificate !== 'string') {
    throw new JoinError('CloudHub answered the join without a "certificate" (PEM)');
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(answer.certificate);
  } catch (err) {
    throw new JoinError('CloudHub answered a "certificate" that cannot be parsed', { cause: err });
  }
  if (typeof answer.ca === 'string' && safeHash(answer.ca) !== caHash) throw new JoinError(`CloudHub answered a "ca" other than the pinned CA ${caHash}`);
  if (!cert.publicKey.equals(publicKey)) throw new JoinError("the certificate CloudHub issued is not for this node's key");
  const subject = parseSubject(cert.subject);
  const cn = `system:node:${o.nodeName}`;
  if (subject.CN?.length !== 1 || subject.CN[0] !== cn || !subject.O?.includes('system:nodes')) {
    throw new JoinError(`the certificate CloudHub issued names ${JSON.stringify(cert.subject.replace(/\n/g, ', '))}, not CN=${cn}, O=system:nodes`);
  }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) throw new JoinError(`the certificate CloudHub issued is not signed by the pinned CA ${caHash}`);
  if (cert.keyUsage && !cert.keyUsage.includes(EKU_CLIENT_AUTH)) throw new JoinError('the certificate CloudHub issued is not for client authentication');
  const now = Date.now();
  if (new Date(cert.validTo).getTime() <= now)
    throw new JoinError(`the certificate CloudHub issued expired at ${new Date(cert.validTo).toISOString()} (is this device's clock right?)`);
  if (new Date(cert.validFrom).getTime() > now) {
    o.log.warn("the node's certificate is not valid yet: this device's clock is behind CloudCore's (TLS fails until it is right)", {
      validFrom: new Date(cert.validFrom).toISOString(),
    });
  }
  return cert;
}

/** The existing edgecore.json (a re-join keeps its other settings), or {} when there is none. */
function readConfig(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new JoinError(`cannot read ${path}`, { cause: err });
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    v = undefined;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new JoinError(`${path} exists and is not a JSON object: fix it or move it away, then join again`);
  return v as Record<string, unknown>;
}

/**
 * EdgeCore's config file (keys as in edge/config.ts): the link URL first (other wss:// endpoints of
 * a previous config kept after it: CloudCore replicas share one CA), node name, data directory, and
 * the node's credentials under `hub.` (`hub.caFile`; `hub.certFile`, `hub.keyFile` are EdgeHub's
 * client certificate). Other settings of a previous file stay; `hub.insecureSkipTlsVerify` goes.
 */
function edgeConfig(
  previous: Record<string, unknown>,
  wss: string,
  nodeName: string,
  dataDir: string,
  paths: { keyFile: string; certFile: string; caFile: string },
  o: JoinOptions,
): Record<string, unknown> {
  const hub: Record<string, unknown> =
    previous.hub !== null && typeof previous.hub === 'object' && !Array.isArray(previous.hub) ? { ...(previous.hub as Record<string, unknown>) } : {};
  if (hub.insecureSkipTlsVerify !== undefined) {
    if (hub.insecureSkipTlsVerify) o.log.warn('hub.insecureSkipTlsVerify removed from the config: the node now verifies CloudHub with its CA');
    delete hub.insecureSkipTlsVerify;
  }
  // The file may list endpoints as an array or as one comma-separated string (shared/config accepts both).
  const listed: unknown[] = Array.isArray(previous.cloud) ? previous.cloud : typeof previous.cloud === 'string' ? previous.cloud.split(',').map((u) => u.trim()) : [];
  const others = listed.filter((u): u is string => typeof u === 'string' && u.startsWith('wss://') && u !== wss);
  return { ...previous, cloud: [wss, ...others], nodeName, dataDir, hub: { ...hub, caFile: paths.caFile, certFile: paths.certFile, keyFile: paths.keyFile } };
}

/** A server's text as one line of at most {@link MAX_SERVER_TEXT} characters. */
function serverText(body: Buffer): string {
  return oneLine(body.toString('utf8'));
}

function oneLine(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters from the server are what is removed
  const flat = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return flat.length > MAX_SERVER_TEXT ? `${flat.slice(0, MAX_SERVER_TEXT)}…` : flat;
}
