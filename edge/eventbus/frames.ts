/**
 * @module
 * A packet-size guard in front of an MQTT parser. mqtt-packet buffers a packet until its last
 * byte arrived and accepts up to 256 MB, and aedes has no limit of its own; this scanner reads only
 * the fixed header of each packet (type byte and Remaining Length) as bytes stream by, and decides
 * about a packet over the limit before its body is buffered anywhere: refuse it (the broker
 * disconnects that client) or skip it (the external client drops a message that is too big, after
 * reading just the start of its body, so that it can acknowledge it). Everything else passes
 * through without a copy.
 */

/** What to do with a packet over the limit: `fail` ends the stream, `skip` drops the packet. */
export type OversizeVerdict = 'fail' | 'skip';

export interface OversizeInfo {
  /** MQTT control packet type (3 = PUBLISH). */
  type: number;
  /** The low 4 bits of the first byte (PUBLISH: DUP, QoS, RETAIN). */
  flags: number;
  /** Size of the whole packet, bytes. */
  bytes: number;
}

/** Outcome of {@link FrameScanner.push}. */
export type ScanResult = { ok: true; pass: Buffer[] } | { ok: false; reason: string };

const HEADER = 0;
const BODY = 1;
const SKIP = 2;

/** How much of a skipped packet's body is kept for {@link FrameScannerOptions.onSkipped}: a PUBLISH's topic and packet id at most. */
const SKIP_HEAD_BYTES = 2 + 65_535 + 2;

export interface FrameScannerOptions {
  maxPacketBytes: number;
  /** Decides about a packet over the limit. Default: fail. */
  onOversize?: (info: OversizeInfo) => OversizeVerdict;
  /** After a skipped packet: its info and the first bytes of its body (up to a PUBLISH's topic and packet id). */
  onSkipped?: (info: OversizeInfo, head: Buffer) => void;
}

export class FrameScanner {
  private state = HEADER;
  private readonly header = Buffer.alloc(5);
  private headerLen = 0;
  private remaining = 0;
  private multiplier = 1;
  private skipped: OversizeInfo | undefined;
  private head: Buffer[] = [];
  private headLen = 0;
  private headWanted = 0;

  constructor(private readonly options: FrameScannerOptions) {}

  /** Scans a chunk; returns the bytes to hand to the parser (slices of `chunk`, or a held header). */
  push(chunk: Buffer): ScanResult {
    const pass: Buffer[] = [];
    // Header bytes carried over from the previous chunk were not passed on yet.
    const held = this.headerLen;
    let headerStart = held > 0 ? -1 : 0;
    let runStart = 0;
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.state === HEADER) {
        const b = chunk[i]!;
        if (this.headerLen === 0) {
          headerStart = i;
          this.remaining = 0;
          this.multiplier = 1;
        }
        this.header[this.headerLen++] = b;
        i++;
        if (this.headerLen === 1) continue;
        this.remaining += (b & 0x7f) * this.multiplier;
        this.multiplier *= 128;
        if (b & 0x80) {
          if (this.headerLen === 5) return { ok: false, reason: 'malformed Remaining Length (more than 4 bytes)' };
          continue;
        }
        const info = { type: this.header[0]! >> 4, flags: this.header[0]! & 0x0f, bytes: this.headerLen + this.remaining };
        if (info.bytes <= this.options.maxPacketBytes) {
          if (headerStart === -1) pass.push(Buffer.from(this.header.subarray(0, held)));
          this.headerLen = 0;
          this.state = this.remaining > 0 ? BODY : HEADER;
          continue;
        }
        const verdict = this.options.onOversize?.(info) ?? 'fail';
        if (verdict === 'fail') return { ok: false, reason: `packet of ${info.bytes} bytes is over the limit of ${this.options.maxPacketBytes}` };
        if (headerStart > runStart) pass.push(chunk.subarray(runStart, headerStart));
        this.headerLen = 0;
        this.skipped = info;
        this.head = [];
        this.headLen = 0;
        this.headWanted = Math.min(this.remaining, SKIP_HEAD_BYTES);
        this.state = SKIP;
        runStart = i;
        if (this.remaining === 0) this.endSkip();
        continue;
      }
      const take = Math.min(this.remaining, n - i);
      if (this.state === SKIP && this.headLen < this.headWanted) {
        const keep = Math.min(take, this.headWanted - this.headLen);
        this.head.push(chunk.subarray(i, i + keep));
        this.headLen += keep;
      }
      i += take;
      this.remaining -= take;
      if (this.state === SKIP) {
        runStart = i;
        if (this.remaining === 0) this.endSkip();
      } else if (this.remaining === 0) this.state = HEADER;
    }
    if (this.state === SKIP) return { ok: true, pass };
    // An incomplete header at the end is held until its length is known.
    const end = this.state === HEADER && this.headerLen > 0 ? (headerStart === -1 ? runStart : headerStart) : n;
    if (end > runStart) pass.push(chunk.subarray(runStart, end));
    return { ok: true, pass };
  }

  private endSkip(): void {
    const info = this.skipped!;
    const head = Buffer.concat(this.head, this.headLen);
    this.skipped = undefined;
    this.head = [];
    this.headLen = 0;
    this.state = HEADER;
    this.options.onSkipped?.(info, head);
  }
}
