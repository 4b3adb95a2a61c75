/**
 * CloudHub's transport frame limit (ws `maxPayload` = maxFrameBytes) acts on the length a
 * frame declares, before its payload arrives: a peer that announces a frame far over the
 * limit and sends only a little of it is closed with 1009 at once. Without the transport
 * limit the server would wait for (and buffer) the whole declared payload, and only the
 * codec would refuse it afterwards, with the same close code: so this test speaks raw
 * WebSocket over TCP and never sends more than 1 KiB of the 32 MiB it declares.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { startTestCloud, type TestCloud } from '../helpers/cloud.js';
import { eventually, within } from '../helpers/process.js';
import { SUBPROTOCOL, NODE_NAME_HEADER } from '../../shared/protocol/index.js';

const LIMIT = 64 * 1024;
const DECLARED = 32 * 1024 * 1024; // over the limit, under ws's own 100 MiB default
const SENT = 1024;

let cloud: TestCloud;
before(async () => {
  cloud = await startTestCloud({ maxFrameBytes: LIMIT });
});
after(async () => {
  await cloud.stop();
});

/** A raw WebSocket client: the opening handshake by hand, then frames parsed from the byte stream. */
class RawClient {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  ended = false;
  private constructor(readonly sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    sock.on('close', () => {
      this.ended = true;
      this.wake();
    });
    sock.on('error', () => {});
  }
  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  private async until<T>(take: () => T | undefined): Promise<T> {
    for (;;) {
      const v = take();
      if (v !== undefined) return v;
      if (this.ended) throw new Error('connection closed');
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  static async open(url: string, node: string): Promise<RawClient> {
    const u = new URL(url);
    const sock = connect(Number(u.port), u.hostname);
    const c = new RawClient(sock);
    await within(new Promise<void>((r, j) => sock.once('connect', r).once('error', j)), 5000, 'the TCP connection');
    sock.write(
      [
        `GET ${u.pathname} HTTP/1.1`,
        `Host: ${u.host}`,
        'Upgrade: websocket',
        'Connection: Upgrade',
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
        'Sec-WebSocket-Version: 13',
        `Sec-WebSocket-Protocol: ${SUBPROTOCOL}`,
        `${NODE_NAME_HEADER}: ${node}`,
        '',
        '',
      ].join('\r\n'),
    );
    const head = await within(
      c.until(() => {
        const end = c.buf.indexOf('\r\n\r\n');
        if (end < 0) return undefined;
        const h = c.buf.subarray(0, end).toString('latin1');
        c.buf = c.buf.subarray(end + 4);
        return h;
      }),
      5000,
      'the handshake response',
    );
    assert.match(head, /^HTTP\/1\.1 101 /, head);
    return c;
  }

  /** The header of a masked binary frame declaring `length` payload bytes, then `payload` (which may be only part of it). */
  sendFrameStart(length: number, payload: Buffer): void {
    const mask = randomBytes(4);
    const head = Buffer.alloc(2 + 8);
    head[0] = 0x82; // FIN, binary
    head[1] = 0x80 | 127; // masked, 64-bit length
    head.writeBigUInt64BE(BigInt(length), 2);
    const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
    this.sock.write(Buffer.concat([head, mask, masked]));
  }

  /** The next close frame from the server (other frames are skipped): its code. */
  closeFrame(): Promise<number> {
    return this.until(() => {
      while (this.buf.length >= 2) {
        let len = this.buf[1]! & 0x7f;
        let at = 2;
        if (len === 126) {
          if (this.buf.length < 4) return undefined;
          len = this.buf.readUInt16BE(2);
          at = 4;
        } else if (len === 127) {
          if (this.buf.length < 10) return undefined;
          len = Number(this.buf.readBigUInt64BE(2));
          at = 10;
        }
        if (this.buf.length < at + len) return undefined;
        const opcode = this.buf[0]! & 0x0f;
        const payload = this.buf.subarray(at, at + len);
        this.buf = this.buf.subarray(at + len);
        if (opcode === 0x8) return payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      }
      return undefined;
    });
  }

  destroy(): void {
    this.sock.destroy();
  }
}

describe('CloudHub transport frame limit', () => {
  test('a frame declaring 32 MiB (limit 64 KiB) is refused with 1009 from its header, before its payload arrives', async () => {
    const c = await RawClient.open(cloud.hub.url, 'declares-huge');
    try {
      await eventually(() => cloud.hub.nodeSummary('declares-huge'), 5000, 'the session');
      c.sendFrameStart(DECLARED, randomBytes(SENT));
      // Only 1 KiB of the 32 MiB was sent: a server that waits for the payload never gets here.
      const code = await within(
        c.closeFrame(),
        5000,
        `a close frame after a ${DECLARED}-byte frame header (only ${SENT} bytes of payload sent); none came: the server waits for the payload instead of refusing the declared length`,
      );
      assert.equal(code, 1009);
      assert.ok(cloud.log.has(/session error: Max payload size exceeded/), 'the refusal is logged');
    } finally {
      c.destroy();
    }
  });

  test('boundary: a frame of exactly the limit passes the transport (the codec then refuses its garbage with 1007); one byte more is 1009 from the header', async () => {
    const exact = await RawClient.open(cloud.hub.url, 'at-limit');
    try {
      exact.sendFrameStart(LIMIT, Buffer.alloc(LIMIT, 0xff)); // 0xff: a CBOR "break" where an item must start
      assert.equal(await within(exact.closeFrame(), 5000, 'a close frame for an invalid frame of exactly the limit'), 1007);
    } finally {
      exact.destroy();
    }
    const over = await RawClient.open(cloud.hub.url, 'over-limit');
    try {
      over.sendFrameStart(LIMIT + 1, Buffer.alloc(SENT, 0xff));
      assert.equal(await within(over.closeFrame(), 5000, `a close frame after a ${LIMIT + 1}-byte frame header (only ${SENT} bytes sent)`), 1009);
    } finally {
      over.destroy();
    }
  });
});
