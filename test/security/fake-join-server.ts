/**
 * A tiny CloudHub for join tests: HTTPS on 127.0.0.1:0 speaking the issue 13 join protocol
 * (`GET /v1/ca.crt`, `POST /v1/join`), with CAs and certificates made by @peculiar/x509
 * (shared/x509's primitives). It records every request it read, so a test can assert that a
 * token was never sent.
 */
import type { webcrypto } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type X509, exportPrivateKey, generateKeyPair, KEY_ALGORITHM, leafExtensions, loadX509, serialNumber, validity } from '../../shared/x509/index.js';
import { caCertHash } from '../../shared/jointoken/index.js';

export interface TestCa {
  pem: string;
  hash: string;
  cert: X509.X509Certificate;
  keys: webcrypto.CryptoKeyPair;
}

/** A self-signed CA (ECDSA P-256), as CloudCore's. */
export async function makeCa(name = 'ledge-cloudhub-ca'): Promise<TestCa> {
  const x509 = await loadX509();
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=${name}`,
    ...validity(),
    keys,
    signingAlgorithm: KEY_ALGORITHM,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  });
  const pem = `${cert.toString('pem')}\n`;
  return { pem, hash: caCertHash(pem), cert, keys };
}

/** A serving certificate from `ca` for 127.0.0.1 and localhost: `cert` is the chain leaf + CA. */
export async function servingCert(ca: TestCa): Promise<{ cert: string; key: string }> {
  const x509 = await loadX509();
  const keys = await generateKeyPair();
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: 'CN=ledge-cloudhub',
    issuer: ca.cert.subject,
    ...validity(),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: KEY_ALGORITHM,
    extensions: await leafExtensions('server', ['127.0.0.1', 'localhost'], ca.cert),
  });
  return { cert: `${leaf.toString('pem')}\n${ca.pem}`, key: await exportPrivateKey(keys.privateKey) };
}

/** A node certificate from `ca` for the CSR's key (its signature verified), as the contract says CloudHub issues it. */
export async function signCsr(ca: TestCa, csrPem: string, nodeName: string): Promise<string> {
  const x509 = await loadX509();
  const csr = new x509.Pkcs10CertificateRequest(csrPem);
  if (!(await csr.verify())) throw new Error('CSR signature does not verify');
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `CN=system:node:${nodeName}, O=system:nodes`,
    issuer: ca.cert.subject,
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + 365 * 86400_000),
    publicKey: await csr.publicKey.export(),
    signingKey: ca.keys.privateKey,
    signingAlgorithm: KEY_ALGORITHM,
    extensions: await leafExtensions('client', [], ca.cert),
  });
  return `${cert.toString('pem')}\n`;
}

/** One request the server read. */
export interface SeenRequest {
  method: string;
  url: string;
  authorization?: string;
  body: string;
}

/** What POST /v1/join answers: a status and a JSON body, or never (the request hangs). */
export type JoinAnswer = { status: number; body: unknown } | 'hang';

export interface FakeCloudHubOptions {
  /** CA whose certificate the server's TLS certificate comes from. */
  tlsCa: TestCa;
  /** CA served at GET /v1/ca.crt and used to sign CSRs. Default tlsCa. */
  servedCa?: TestCa;
  /** Answers POST /v1/join. Default: sign the CSR with servedCa, 200 `{certificate, ca}`. */
  onJoin?: (req: { nodeName: string; csr: string; authorization?: string }) => Promise<JoinAnswer>;
}

export interface FakeCloudHub {
  /** `wss://127.0.0.1:<port>`. */
  url: string;
  seen: SeenRequest[];
  close(): Promise<void>;
}

export async function startFakeCloudHub(o: FakeCloudHubOptions): Promise<FakeCloudHub> {
  const served = o.servedCa ?? o.tlsCa;
  const tls = await servingCert(o.tlsCa);
  const seen: SeenRequest[] = [];
  const hanging = new Set<ServerResponse>();
  const onJoin = o.onJoin ?? (async (r) => ({ status: 200, body: { certificate: await signCsr(served, r.csr, r.nodeName), ca: served.pem } }));
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    seen.push({ method: req.method ?? '', url: req.url ?? '', ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}), body });
    if (req.method === 'GET' && req.url === '/v1/ca.crt') {
      res.writeHead(200, { 'content-type': 'application/x-pem-file' }).end(served.pem);
      return;
    }
    if (req.method === 'POST' && req.url === '/v1/join') {
      const parsed = JSON.parse(body) as { nodeName: string; csr: string };
      const answer = await onJoin({ ...parsed, ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
      if (answer === 'hang') {
        hanging.add(res);
        return;
      }
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
      return;
    }
    res.writeHead(404).end();
  };
  const server = createHttpsServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    handle(req, res).catch((err: Error) => res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'TEST', message: err.message })));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `wss://127.0.0.1:${port}`,
    seen,
    close: async () => {
      for (const r of hanging) r.destroy();
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

/** A TCP server on 127.0.0.1:0 that accepts connections and never sends a byte (no TLS handshake). */
export async function startSilentServer(): Promise<{ url: string; connections: () => number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let count = 0;
  const server = createTcpServer((s) => {
    count++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `wss://127.0.0.1:${port}`,
    connections: () => count,
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}
