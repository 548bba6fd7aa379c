/**
 * Live connection state: which device has which open channel. Kept apart
 * from durable state so that several server nodes can later each hold
 * their own registry over one shared database.
 *
 * Duplicate-connection policy: the newer connection of a device wins; the
 * older one is closed with REPLACED. The device is flagged as a possible
 * clone when the older connection was still alive (it answered the last
 * ping or sent a frame since) or presented another hardware fingerprint;
 * a half-dead connection replaced by its own agent's reconnect is not a
 * clone.
 */

/** Heartbeat ticks per ping interval: each pings its share of the sessions. */
export const HEARTBEAT_SLICES = 30;
/** Shortest heartbeat tick (short intervals, as in tests, get fewer slices). */
const MIN_HEARTBEAT_TICK_MS = 100;

/** Most heartbeat passes a channel may stay quiet before it is pinged: middleboxes drop idle mappings. */
export const MAX_QUIET_PASSES = 4;

/**
 * Heartbeat passes a channel may stay quiet before it is pinged: its
 * check-in interval and one pass more, so an agent that checks in on time
 * is never pinged (its check-ins show it is there, and the acks show it the
 * server is), at most {@link MAX_QUIET_PASSES}. At the defaults (pings every
 * 30 s, check-ins every 60 s) that is 3: no pings at all for punctual agents,
 * where one in two passes pinged every agent before (at 100,000 agents,
 * 1,667 pings and pongs a second).
 */
export function quietPassesBeforePing(pingIntervalMs: number, checkinIntervalSec: number): number {
  return Math.max(1, Math.min(MAX_QUIET_PASSES, Math.ceil((checkinIntervalSec * 1000) / pingIntervalMs) + 1));
}

/** What the registry needs from a session. */
export interface LiveSession {
  readonly deviceId: string;
  readonly fingerprint: string;
  /** True while the peer has shown signs of life within the last heartbeat pass (a frame, or the answer to a ping). */
  readonly alive: boolean;
  /** Closes with a close code; the session unregisters itself. */
  close(code: number, reason: string): void;
  /**
   * One heartbeat pass: pings the peer once it has been quiet for
   * `pingAfterQuietPasses` passes; terminates it if it left a ping unanswered.
   */
  heartbeat(pingAfterQuietPasses: number): void;
}

/** A session in the server's registry, local or in an agent worker: it can also be told which CAs to trust. */
export interface AgentChannel extends LiveSession {
  sendTrust(caCertificates: string[]): void;
}

/** Facts the registry keeps after a channel closes, for presence. */
export interface DisconnectFacts {
  readonly at: number;
  readonly clean: boolean;
}

/** Result of registering a session. */
export interface RegisterResult {
  /** The older session that was replaced, if any. */
  readonly replaced: LiveSession | undefined;
  /** True when the replacement looks like two machines sharing one certificate. */
  readonly possibleClone: boolean;
}

/** Holds every live agent session of this node. */
export class SessionRegistry<S extends LiveSession = LiveSession> {
  private readonly sessions = new Map<string, S>();
  private readonly disconnects = new Map<string, DisconnectFacts>();
  private timer: NodeJS.Timeout | null = null;
  private shutdownNotice: ((sessions: number) => void) | undefined;

  /** Registers a session that completed `hello`, replacing an older one of the same device. */
  register(session: S, closeCodeReplaced: number): RegisterResult {
    const old = this.sessions.get(session.deviceId);
    this.sessions.set(session.deviceId, session);
    this.disconnects.delete(session.deviceId);
    if (!old || old === session) return { replaced: undefined, possibleClone: false };
    const possibleClone = old.alive || old.fingerprint !== session.fingerprint;
    old.close(closeCodeReplaced, 'replaced by a newer connection of the same device');
    return { replaced: old, possibleClone };
  }

  /** Removes a session if it is still the device's current one. */
  unregister(session: S, facts: DisconnectFacts): void {
    if (this.sessions.get(session.deviceId) !== session) return;
    this.sessions.delete(session.deviceId);
    this.disconnects.set(session.deviceId, facts);
  }

  /** The live session of a device, if any. */
  get(deviceId: string): S | undefined {
    return this.sessions.get(deviceId);
  }

  /** How the last channel of a device ended, if it is not connected now. */
  lastDisconnect(deviceId: string): DisconnectFacts | undefined {
    return this.disconnects.get(deviceId);
  }

  /** Number of live sessions. */
  get size(): number {
    return this.sessions.size;
  }

  /** Every live session. */
  values(): IterableIterator<S> {
    return this.sessions.values();
  }

  /**
   * Starts one shared heartbeat timer for all sessions. Each session gets a
   * heartbeat pass once per `intervalMs` (it is pinged when it has been
   * quiet for `pingAfterQuietPasses` passes), but not all at once: the timer
   * ticks {@link HEARTBEAT_SLICES} times per interval and each tick visits
   * the next share of the sessions, so 100,000 pings never hold the event
   * loop in one go (check-in acks and the console would wait behind them).
   */
  startHeartbeat(intervalMs: number, pingAfterQuietPasses = 1): void {
    if (this.timer) return;
    const slices = Math.max(1, Math.min(HEARTBEAT_SLICES, Math.floor(intervalMs / MIN_HEARTBEAT_TICK_MS)));
    // One pass pings a snapshot of the sessions, a share per tick; sessions that went (or were replaced) meanwhile are skipped.
    // A pass lasts exactly `slices` ticks, however few sessions there are: each is pinged once per interval.
    let pass: S[] = [];
    let at = 0;
    let perTick = 0;
    let tick = 0;
    this.timer = setInterval(() => {
      if (tick % slices === 0) {
        pass = [...this.sessions.values()];
        at = 0;
        perTick = Math.ceil(pass.length / slices);
      }
      tick += 1;
      const end = Math.min(pass.length, at + perTick);
      for (; at < end; at += 1) {
        const session = pass[at]!;
        if (this.sessions.get(session.deviceId) === session) session.heartbeat(pingAfterQuietPasses);
      }
      if (at >= pass.length) pass = [];
    }, intervalMs / slices);
    this.timer.unref();
  }

  /**
   * Sets what runs just before {@link closeAll} closes the sessions (the agent
   * listener tells every agent when to come back); it hears how many there are.
   */
  onShutdown(notice: (sessions: number) => void): void {
    this.shutdownNotice = notice;
  }

  /**
   * Stops the heartbeat and closes every session with the given code, after
   * the shutdown notice; `fleetSize` is what the notice hears (an agent
   * worker passes the whole server's count, default: this registry's).
   */
  closeAll(code: number, reason: string, fleetSize = this.sessions.size): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    try {
      this.shutdownNotice?.(fleetSize);
    } finally {
      for (const s of [...this.sessions.values()]) s.close(code, reason);
    }
  }
}
