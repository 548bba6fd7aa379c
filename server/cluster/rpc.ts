/**
 * Request/response and notifications over a Node IPC channel (a cluster
 * worker and its primary). Each call carries an id and a deadline; its
 * answer is a value or an error carried as RollcallError code, message and
 * retryability, so a refusal raised in the primary (an enrollment token
 * that is used up) reaches the worker as the same typed error. When the
 * channel goes away, every call still waiting fails at once.
 *
 * The wire shapes are a union on `rpc`; method names come from typed maps
 * (see messages.ts), so both ends agree on each call's arguments and result.
 */
import type { Logger } from 'pino';
import { describeError, RollcallError } from '../../common/errors.js';

/** Calls one side answers: each method's arguments and result. */
export type MethodMap = { readonly [method: string]: { readonly args: unknown; readonly result: unknown } };
/** Notifications one side hears: each one's payload. */
export type NoteMap = { readonly [note: string]: unknown };

/** A message on the channel. */
export type RpcMessage =
  | { readonly rpc: 'call'; readonly id: number; readonly method: string; readonly args: unknown }
  | { readonly rpc: 'reply'; readonly id: number; readonly value: unknown }
  | { readonly rpc: 'fail'; readonly id: number; readonly error: { readonly code: string; readonly message: string; readonly retryable: boolean } }
  | { readonly rpc: 'note'; readonly method: string; readonly args: unknown };

/** The channel: `process` in a worker, a `cluster.Worker` in the primary. */
export interface RpcPort {
  send(message: RpcMessage): boolean;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  on(event: 'disconnect', listener: () => void): unknown;
}

/** How one side answers the other's calls and notifications. */
export interface RpcHandlers<In extends MethodMap, InNotes extends NoteMap> {
  readonly calls: { readonly [K in keyof In]: (args: In[K]['args']) => In[K]['result'] | Promise<In[K]['result']> };
  readonly notes: { readonly [K in keyof InNotes]: (args: InNotes[K]) => void };
}

/** Longest a call waits for its answer unless told otherwise. */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;

interface Pending {
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
}

function isRpcMessage(m: unknown): m is RpcMessage {
  return typeof m === 'object' && m !== null && typeof (m as { rpc?: unknown }).rpc === 'string';
}

/** One end of the channel: makes `Out` calls and `OutNotes`, answers `In` calls and hears `InNotes`. */
export class RpcPeer<Out extends MethodMap, OutNotes extends NoteMap, In extends MethodMap, InNotes extends NoteMap> {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closedWith: RollcallError | undefined;

  constructor(
    private readonly port: RpcPort,
    private readonly handlers: RpcHandlers<In, InNotes>,
    private readonly log: Logger,
    private readonly timeoutMs = DEFAULT_CALL_TIMEOUT_MS,
  ) {
    port.on('message', (m) => {
      if (isRpcMessage(m)) this.receive(m);
    });
    port.on('disconnect', () => this.close('the IPC channel closed'));
  }

  /** Calls a method on the other side; rejects with its error, on the deadline, or when the channel goes. */
  call<K extends keyof Out & string>(method: K, args: Out[K]['args'], timeoutMs = this.timeoutMs): Promise<Out[K]['result']> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = this.nextId++;
    return new Promise<Out[K]['result']>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RollcallError('RPC_TIMEOUT', `no answer to ${method} within ${timeoutMs} ms`, { retryable: true }));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.post({ rpc: 'call', id, method, args });
    });
  }

  /** Sends a notification; nothing comes back. Dropped (and logged at debug) once the channel is gone. */
  notify<K extends keyof OutNotes & string>(method: K, args: OutNotes[K]): void {
    if (this.closedWith) {
      this.log.debug({ note: method }, 'notification dropped: the IPC channel is closed');
      return;
    }
    this.post({ rpc: 'note', method, args });
  }

  /** Calls still waiting for an answer. */
  get waiting(): number {
    return this.pending.size;
  }

  /** Fails every waiting call and refuses new ones. */
  close(why: string): void {
    if (this.closedWith) return;
    this.closedWith = new RollcallError('RPC_CHANNEL_CLOSED', why, { retryable: true });
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(this.closedWith);
    }
    this.pending.clear();
  }

  private post(m: RpcMessage): void {
    try {
      this.port.send(m);
    } catch (err) {
      // The channel closed under us (ERR_IPC_CHANNEL_CLOSED): the disconnect event fails the rest.
      this.log.warn({ err: describeError(err), rpc: m.rpc }, 'cannot send on the IPC channel');
      this.close('the IPC channel closed');
    }
  }

  private receive(m: RpcMessage): void {
    switch (m.rpc) {
      case 'call':
        this.answer(m.id, m.method, m.args);
        break;
      case 'reply':
      case 'fail': {
        const p = this.pending.get(m.id);
        if (!p) return; // answered after its deadline
        this.pending.delete(m.id);
        clearTimeout(p.timer);
        if (m.rpc === 'reply') p.resolve(m.value);
        else p.reject(new RollcallError(m.error.code, m.error.message, { retryable: m.error.retryable }));
        break;
      }
      case 'note': {
        const handler = (this.handlers.notes as Record<string, ((a: unknown) => void) | undefined>)[m.method];
        if (!handler) {
          this.log.warn({ note: m.method }, 'unknown IPC notification ignored');
          return;
        }
        try {
          handler(m.args);
        } catch (err) {
          this.log.error({ err: describeError(err), note: m.method }, 'IPC notification handler failed');
        }
        break;
      }
    }
  }

  private answer(id: number, method: string, args: unknown): void {
    const handler = (this.handlers.calls as Record<string, ((a: unknown) => unknown) | undefined>)[method];
    const fail = (err: unknown): void => {
      const e = err instanceof RollcallError ? err : new RollcallError('INTERNAL', describeError(err));
      if (!(err instanceof RollcallError)) this.log.error({ err: describeError(err), method }, 'IPC call failed');
      if (!this.closedWith) this.post({ rpc: 'fail', id, error: { code: e.code, message: e.message, retryable: e.retryable } });
    };
    if (!handler) return fail(new RollcallError('RPC_UNKNOWN_METHOD', `no IPC method ${method}`));
    let result: unknown;
    try {
      result = handler(args);
    } catch (err) {
      return fail(err);
    }
    Promise.resolve(result).then((value) => {
      if (!this.closedWith) this.post({ rpc: 'reply', id, value: value === undefined ? null : value });
    }, fail);
  }
}
