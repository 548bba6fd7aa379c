/**
 * The agent's readable status, kept in `<state-dir>/status.json` by a
 * running agent and printed by `rollcall-agent status`. The shape is
 * documented in docs/agent.md and stable for `--json`.
 */
import type { FailureClass } from './errors.js';
import { writePrivateFile } from './state.js';

/** Connection states, iterable. */
export const AGENT_STATES = ['starting', 'connecting', 'connected', 'backoff', 'stopped', 'refused'] as const;
export type AgentStateName = (typeof AGENT_STATES)[number];

/** What `status` shows. */
export interface AgentStatus {
  state: AgentStateName;
  deviceId: string;
  group: string;
  /** `host:port` of the server in use or being tried. */
  server: string;
  pid: number;
  since: string;
  updatedAt: string;
  intervalSec: number | null;
  lastCheckinAt: string | null;
  lastAckedSeq: number;
  connectedSince: string | null;
  nextAttemptAt: string | null;
  failedAttempts: number;
  lastError: { class: FailureClass; code: string; message: string; at: string } | null;
}

/** Keeps the status in memory and writes it out on every change. */
export class StatusFile {
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly file: string,
    readonly status: AgentStatus,
    private readonly onWriteError: (err: unknown) => void,
  ) {}

  /** Applies a change and queues a write (writes never overlap). */
  update(change: Partial<AgentStatus>): void {
    Object.assign(this.status, change, { updatedAt: new Date().toISOString() });
    const snapshot = JSON.stringify(this.status, null, 2);
    this.writing = this.writing.then(() => writePrivateFile(this.file, snapshot)).catch(this.onWriteError);
  }

  /** Resolves when every queued write is done. */
  flushed(): Promise<void> {
    return this.writing;
  }
}

/** Formats a status for people. */
export function formatStatus(s: AgentStatus, running: boolean): string {
  const lines = [
    `state:          ${running ? s.state : `${s.state} (agent not running)`}`,
    `device:         ${s.deviceId}`,
    `group:          ${s.group}`,
    `server:         ${s.server}`,
    `interval:       ${s.intervalSec === null ? '-' : `${s.intervalSec}s`}`,
    `last check-in:  ${s.lastCheckinAt ?? 'never'} (seq ${s.lastAckedSeq})`,
    `connected since: ${s.connectedSince ?? '-'}`,
  ];
  if (s.nextAttemptAt) lines.push(`next attempt:   ${s.nextAttemptAt} (failed attempts: ${s.failedAttempts})`);
  lines.push(s.lastError ? `last error:     [${s.lastError.class}] ${s.lastError.code}: ${s.lastError.message} (at ${s.lastError.at})` : 'last error:     none');
  return lines.join('\n');
}
