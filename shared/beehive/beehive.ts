/**
 * @module
 * Beehive: the in-process message bus connecting the modules of one side
 * (KubeEdge's `staging/src/github.com/kubeedge/beehive`). Modules register with a
 * name and a group; messages go to a module (`send`), to every module of a group
 * (`sendToGroup`), or as a request awaiting its response (`sendSync`, correlated by
 * `parentId`). A module whose `start` rejects is restarted with exponential backoff
 * (KubeEdge's RestartPolicy lesson, proposal 6442): a failing module never takes the
 * process down nor leaves it half-alive. `stop()` aborts every module and waits for
 * them to drain.
 */
import { NoSuchModuleError, StoppedError, TimeoutError, errorMessage } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { silentLogger } from '../log/index.js';
import type { Message } from '../protocol/message.js';
import { newResponse } from '../protocol/message.js';
import { sleep } from '../runtime/index.js';
import { backoff } from '../backoff/index.js';
import { Mailbox } from './mailbox.js';

export interface RestartPolicy {
  /** 'on-failure' (default) restarts after a rejection; 'never' leaves the module stopped. */
  mode: 'on-failure' | 'never';
  /** First delay in ms. Default 1000. */
  initialDelayMs?: number;
  /** Delay cap in ms. Default 30000. */
  maxDelayMs?: number;
}

/** What a module gets to talk to the bus. */
export interface ModuleContext {
  readonly name: string;
  readonly log: Logger;
  /** Sends to one module. Waits while its mailbox is full. */
  send(to: string, message: Message): Promise<void>;
  /** Sends to every module of `group` (a shallow copy each). */
  sendToGroup(group: string, message: Message): Promise<void>;
  /** Sends a request and resolves with the response whose parentId is the request's id. */
  sendSync<R = unknown>(to: string, message: Message, timeoutMs?: number): Promise<Message<R>>;
  /** Replies to `request` (resolves the requester's sendSync). */
  respond(request: Message, content: unknown): Promise<void>;
  /** Delivers a prepared response message (parentId already set). */
  sendResponse(response: Message): Promise<void>;
  /** Next message for this module. */
  receive(signal?: AbortSignal): Promise<Message>;
  /** This module's messages until `signal` aborts (then the loop just ends). */
  messages(signal: AbortSignal): AsyncIterable<Message>;
}

/** A module: named, grouped, started with a context and a signal that aborts on stop. */
export interface Module {
  readonly name: string;
  readonly group: string;
  readonly restartPolicy?: RestartPolicy;
  /**
   * Runs the module until `signal` aborts. Resolving means "done" (normal when stopping);
   * rejecting means failure and triggers the restart policy.
   */
  start(ctx: ModuleContext, signal: AbortSignal): Promise<void>;
}

export interface BeehiveOptions {
  log?: Logger;
  /** Mailbox capacity per module. Default 1024 (KubeEdge's channel buffer). */
  mailboxCapacity?: number;
  /** Default sendSync timeout in ms. Default 30000 (KubeEdge's). */
  syncTimeoutMs?: number;
}

interface Registered {
  module: Module;
  mailbox: Mailbox<Message>;
  controller: AbortController;
  running?: Promise<void>;
  restarts: number;
}

interface PendingSync {
  resolve: (m: Message) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
}

export class Beehive {
  private readonly modules = new Map<string, Registered>();
  private readonly groups = new Map<string, Set<string>>();
  private readonly pending = new Map<string, PendingSync>();
  private readonly log: Logger;
  private readonly capacity: number;
  private readonly syncTimeoutMs: number;
  private started = false;
  private stopping = false;

  constructor(options: BeehiveOptions = {}) {
    this.log = options.log ?? silentLogger;
    this.capacity = options.mailboxCapacity ?? 1024;
    this.syncTimeoutMs = options.syncTimeoutMs ?? 30_000;
  }

  /** Registers a module. Must be called before {@link start}. */
  register(module: Module): void {
    if (this.modules.has(module.name)) throw new TypeError(`module "${module.name}" is already registered`);
    if (this.started) throw new TypeError('register modules before start()');
    this.modules.set(module.name, { module, mailbox: new Mailbox(this.capacity), controller: new AbortController(), restarts: 0 });
    let g = this.groups.get(module.group);
    if (!g) this.groups.set(module.group, (g = new Set()));
    g.add(module.name);
  }

  has(name: string): boolean {
    return this.modules.has(name);
  }

  /** Starts every registered module. */
  start(): void {
    if (this.started) return;
    this.started = true;
    for (const reg of this.modules.values()) reg.running = this.run(reg);
  }

  private async run(reg: Registered): Promise<void> {
    const { module } = reg;
    const policy = module.restartPolicy ?? { mode: 'on-failure' };
    const initial = policy.initialDelayMs ?? 1000;
    const cap = policy.maxDelayMs ?? 30_000;
    const signal = reg.controller.signal;
    const ctx = this.context(module.name);
    const restart = backoff({ baseMs: initial, maxMs: cap });
    for (;;) {
      const began = Date.now();
      try {
        this.log.debug('module starting', { module: module.name });
        await module.start(ctx, signal);
        if (!signal.aborted) this.log.info('module finished', { module: module.name });
        return;
      } catch (err) {
        if (signal.aborted) return;
        if (policy.mode === 'never') {
          this.log.error('module failed; restart policy is never, it stays stopped', { module: module.name, err });
          return;
        }
        // A module that ran a while before failing starts again from the initial delay.
        if (Date.now() - began > cap) restart.reset();
        const delay = restart.next();
        this.log.error(`module failed: ${errorMessage(err)}; restarting in ${delay} ms`, { module: module.name, err, restarts: reg.restarts });
        await sleep(delay, signal);
        if (signal.aborted) return;
        reg.restarts++;
      }
    }
  }

  /** Number of times a module was restarted after failing. */
  restartCount(name: string): number {
    return this.modules.get(name)?.restarts ?? 0;
  }

  /** The bus as seen by module `name` (also usable by embedders and tests to inject messages). */
  context(name: string): ModuleContext {
    const log = this.log.child({ module: name });
    const self = this;
    return {
      name,
      log,
      send: (to, message) => self.deliver(to, message),
      sendToGroup: (group, message) => self.deliverToGroup(group, message),
      sendSync: (to, message, timeoutMs) => self.request(to, message, timeoutMs),
      respond: (request, content) => self.routeResponse(newResponse(request, name, content)),
      sendResponse: (response) => self.routeResponse(response),
      receive: (signal) => {
        const reg = self.modules.get(name);
        if (!reg) return Promise.reject(new NoSuchModuleError(`module "${name}" is not registered`));
        return reg.mailbox.take(signal);
      },
      async *messages(signal) {
        const reg = self.modules.get(name);
        if (!reg) throw new NoSuchModuleError(`module "${name}" is not registered`);
        for (;;) {
          try {
            yield await reg.mailbox.take(signal);
          } catch (err) {
            if (signal.aborted || err instanceof StoppedError) return;
            throw err;
          }
        }
      },
    };
  }

  private deliver(to: string, message: Message): Promise<void> {
    if (this.stopping) return Promise.reject(new StoppedError('beehive is stopping'));
    const reg = this.modules.get(to);
    if (!reg) return Promise.reject(new NoSuchModuleError(`no module named "${to}"`));
    return reg.mailbox.put(message);
  }

  private async deliverToGroup(group: string, message: Message): Promise<void> {
    const names = this.groups.get(group);
    if (!names || names.size === 0) throw new NoSuchModuleError(`no module in group "${group}"`);
    await Promise.all([...names].map((n) => this.deliver(n, names.size > 1 ? { ...message } : message)));
  }

  private request<R>(to: string, message: Message, timeoutMs = this.syncTimeoutMs): Promise<Message<R>> {
    message.header.sync = true;
    return new Promise<Message<R>>((resolve, reject) => {
      const id = message.header.id;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new TimeoutError(`no response from "${to}" to ${message.route.operation} ${message.route.resource} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (m: Message) => void, reject, timer });
      this.deliver(to, message).catch((err) => {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(err);
      });
    });
  }

  private async routeResponse(response: Message): Promise<void> {
    const parentId = response.header.parentId;
    const waiter = parentId ? this.pending.get(parentId) : undefined;
    if (waiter && parentId) {
      clearTimeout(waiter.timer);
      this.pending.delete(parentId);
      waiter.resolve(response);
      return;
    }
    // No one waits any more (the request timed out): the requester already got its error.
    this.log.debug('late response dropped', { parentId, resource: response.route.resource });
  }

  /**
   * Stops all modules: aborts their signals, closes mailboxes, and waits up to
   * `timeoutMs` for them to finish in-flight work.
   */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const reg of this.modules.values()) reg.controller.abort(new StoppedError('beehive stopping'));
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new StoppedError('beehive stopping'));
    }
    this.pending.clear();
    const all = Promise.allSettled([...this.modules.values()].map((r) => r.running));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    for (const reg of this.modules.values()) reg.mailbox.close();
    if (timedOut) this.log.warn(`modules did not stop within ${timeoutMs} ms`, { code: TimeoutError.code });
  }
}
