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

/** What the registry needs from a session. */
export interface LiveSession {
  readonly deviceId: string;
  readonly fingerprint: string;
  /** True while the peer has shown signs of life since the last ping. */
  readonly alive: boolean;
  /** Closes with a close code; the session unregisters itself. */
  close(code: number, reason: string): void;
  /** Sends a ping and clears `alive`; terminates the socket if it was already clear. */
  heartbeat(): void;
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

  /** Starts one shared heartbeat timer for all sessions. */
  startHeartbeat(intervalMs: number): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      for (const s of this.sessions.values()) s.heartbeat();
    }, intervalMs);
    this.timer.unref();
  }

  /**
   * Sets what runs just before {@link closeAll} closes the sessions (the agent
   * listener tells every agent when to come back); it hears how many there are.
   */
  onShutdown(notice: (sessions: number) => void): void {
    this.shutdownNotice = notice;
  }

  /** Stops the heartbeat and closes every session with the given code, after the shutdown notice. */
  closeAll(code: number, reason: string): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    try {
      this.shutdownNotice?.(this.sessions.size);
    } finally {
      for (const s of [...this.sessions.values()]) s.close(code, reason);
    }
  }
}
