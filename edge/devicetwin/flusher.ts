/**
 * @module
 * The upstream flusher: sends the dirty twins and states to the cloud, only while the link is up.
 *
 * One pass (every `reportIntervalMs`) walks the dirty devices oldest first and sends their
 * changes since the last report the cloud accepted, as `update` of resource `devicestatus` (group
 * twin, content {@link DeviceReportBatch}) to EdgeHub with sendSync: at most
 * `maxReportsPerMessage` devices and `maxReportBytes` of reports per message, one message at a
 * time. EdgeHub answers null once the message is durable in its outbox: what was sent is then
 * clean, unless it changed meanwhile (sequence numbers tell). An error answer or a failed send
 * (timeout, no EdgeHub) keeps everything dirty and ends the pass; the next one retries.
 * Offline nothing is sent nor queued: the latest value of each property waits in the twin store.
 */
import { ErrorCode } from '../../shared/errors/index.js';
import type { DeviceReport, DeviceReportBatch, Twin } from '../../shared/devices/index.js';
import { errorCode, errorMessage } from '../../shared/errors/index.js';
import { Group, ModuleName, Operation, ResourceType, newMessage, type ErrorContent, type Message } from '../../shared/protocol/index.js';
import type { ProblemLog } from './problems.js';
import type { Held, TwinRegistry } from './twins.js';

export interface FlusherOptions {
  maxReportsPerMessage: number;
  maxReportBytes: number;
  linkUp: () => boolean;
  /** Sends to EdgeHub and resolves with the reply's content (null: durable in the outbox). */
  send: (msg: Message<DeviceReportBatch>) => Promise<unknown>;
}

interface Entry {
  key: string;
  report: DeviceReport;
  props: [string, number][];
  stateSeq: number;
  bytes: number;
}

export class Flusher {
  private running: Promise<void> | undefined;
  readonly stats = { messages: 0, reports: 0, twins: 0, failures: 0 };

  constructor(
    private readonly registry: TwinRegistry,
    private readonly options: FlusherOptions,
    private readonly problems: ProblemLog,
  ) {}

  /** Runs one pass (or joins the one running). */
  flush(): Promise<void> {
    if (!this.running) this.running = this.pass().finally(() => (this.running = undefined));
    return this.running;
  }

  private async pass(): Promise<void> {
    const o = this.options;
    if (!o.linkUp()) return;
    let batch: Entry[] = [];
    let batchBytes = 0;
    const sendBatch = async (): Promise<boolean> => {
      const ok = batch.length === 0 || (await this.send(batch));
      batch = [];
      batchBytes = 0;
      return ok;
    };
    const close = (e: Entry): void => {
      if (!e.report.twins && e.report.state === undefined) {
        // Nothing left to say (a dirty property without values): clean without a message.
        this.registry.settle(e.key, e.props, e.stateSeq);
        return;
      }
      batch.push(e);
      batchBytes += e.bytes;
    };
    for (const h of this.registry.dirtyDevices()) {
      let e = this.entry(h);
      if (h.stateSeq > 0) {
        e.report.state = h.rec.state ?? '';
        if (h.rec.lastOnlineTime !== undefined) e.report.lastOnlineTime = h.rec.lastOnlineTime;
        e.stateSeq = h.stateSeq;
        e.bytes += 40 + e.report.state.length + (h.rec.lastOnlineTime?.length ?? 0);
      }
      for (const [p, seq] of h.dirty) {
        const t = h.rec.twins[p];
        if (!t?.reported && !t?.observedDesired) {
          e.props.push([p, seq]);
          continue;
        }
        const twin: Twin = { propertyName: p, ...(t.reported ? { reported: t.reported } : {}), ...(t.observedDesired ? { observedDesired: t.observedDesired } : {}) };
        const size = Buffer.byteLength(JSON.stringify(twin)) + 1;
        if (batchBytes + e.bytes + size > o.maxReportBytes && (batch.length > 0 || e.report.twins)) {
          // The message is full: what this device has so far goes now, the rest in the next message.
          close(e);
          if (!(await sendBatch())) return;
          e = this.entry(h);
        }
        (e.report.twins ??= []).push(twin);
        e.props.push([p, seq]);
        e.bytes += size;
      }
      close(e);
      if (batch.length >= o.maxReportsPerMessage && !(await sendBatch())) return;
    }
    await sendBatch();
  }

  private entry(h: Held): Entry {
    const report: DeviceReport = { namespace: h.namespace, name: h.name, ...(h.rec.uid !== undefined ? { uid: h.rec.uid } : {}) };
    return { key: h.key, report, props: [], stateSeq: 0, bytes: 60 + h.key.length + (h.rec.uid?.length ?? 0) };
  }

  /** Sends one message; true when EdgeHub took it (the entries are settled then). */
  private async send(batch: Entry[]): Promise<boolean> {
    if (!this.options.linkUp()) return false;
    const msg = newMessage<DeviceReportBatch>({
      source: ModuleName.DeviceTwin,
      group: Group.Twin,
      operation: Operation.Update,
      resource: ResourceType.DeviceStatus,
      content: { reports: batch.map((e) => e.report) },
      sync: true,
    });
    let reply: unknown;
    try {
      reply = await this.options.send(msg);
    } catch (err) {
      this.failed(errorCode(err), errorMessage(err), batch.length);
      return false;
    }
    if (reply !== null && reply !== undefined) {
      const c = reply as Partial<ErrorContent>;
      this.failed(typeof c.code === 'string' ? c.code : ErrorCode.Unknown, typeof c.message === 'string' ? c.message : JSON.stringify(reply), batch.length);
      return false;
    }
    this.stats.messages++;
    for (const e of batch) {
      this.stats.reports++;
      this.stats.twins += e.report.twins?.length ?? 0;
      this.registry.settle(e.key, e.props, e.stateSeq);
    }
    return true;
  }

  private failed(code: string, message: string, devices: number): void {
    this.stats.failures++;
    this.problems.warn(`upstream:${code}`, `device reports of ${devices} devices not sent: ${message}; they stay dirty and are retried at the next interval`, { code });
  }
}
