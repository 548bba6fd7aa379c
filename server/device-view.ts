/**
 * The device as the APIs show it: stored facts, live connection state and
 * computed presence, in one stable shape (documented in docs/api.md).
 */
import { computeAgeBand, computePresence, lastContact, type AgeBand, type Presence } from './presence.js';
import type { DisconnectFacts } from './session-registry.js';
import type { Device } from './storage/devices-store.js';

/** A device as the console API returns it. */
export interface DeviceView {
  readonly id: string;
  readonly hostname: string;
  readonly groupId: string;
  readonly groupPath: string;
  readonly status: Presence | 'revoked';
  readonly presence: Presence;
  readonly ageBand: AgeBand;
  readonly connected: boolean;
  readonly lastCheckinAt: string | null;
  readonly lastContactAt: string | null;
  readonly lastConnectedAt: string | null;
  readonly agentVersion: string | null;
  readonly os: string | null;
  readonly address: string | null;
  readonly enrolledAt: string;
  readonly revokedAt: string | null;
  readonly placementReason: string | null;
  readonly possibleCloneAt: string | null;
  readonly certificateExpiresAt: string;
  readonly checkins: number;
  readonly lastSeq: number;
  /** Check-ins the agent recorded while it could not reach the server (delivered later through its outbox). */
  readonly offlineCheckins: number;
  readonly lastOfflineCheckinAt: string | null;
}

/** What the view needs besides the stored device. */
export interface ViewContext {
  readonly groupPaths: ReadonlyMap<string, string>;
  readonly isConnected: (deviceId: string) => boolean;
  readonly lastDisconnect: (deviceId: string) => DisconnectFacts | undefined;
  readonly defaultIntervalSec: number;
  readonly now: number;
}

const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());

/** Builds the API view of one device. */
export function deviceView(d: Device, ctx: ViewContext): DeviceView {
  const connected = ctx.isConnected(d.id);
  const last = lastContact(d);
  const disconnect = ctx.lastDisconnect(d.id);
  const presence = computePresence({
    connected,
    closedCleanly: !connected && disconnect !== undefined && disconnect.clean && (last === null || disconnect.at >= last),
    lastCheckinAt: d.lastCheckinAt,
    lastConnectedAt: d.lastConnectedAt,
    intervalSec: d.intervalSec ?? ctx.defaultIntervalSec,
    now: ctx.now,
  });
  return {
    id: d.id,
    hostname: d.hostname,
    groupId: d.groupId,
    groupPath: ctx.groupPaths.get(d.groupId) ?? '',
    status: d.revokedAt !== null ? 'revoked' : presence,
    presence,
    ageBand: computeAgeBand(last, ctx.now),
    connected,
    lastCheckinAt: iso(d.lastCheckinAt),
    lastContactAt: iso(last),
    lastConnectedAt: iso(d.lastConnectedAt),
    agentVersion: d.agentVersion,
    os: d.os,
    address: d.lastAddress,
    enrolledAt: new Date(d.enrolledAt).toISOString(),
    revokedAt: iso(d.revokedAt),
    placementReason: d.placementReason,
    possibleCloneAt: iso(d.possibleCloneAt),
    certificateExpiresAt: new Date(d.certNotAfter).toISOString(),
    checkins: d.checkinCount,
    lastSeq: d.lastSeq,
    offlineCheckins: d.offlineCheckins,
    lastOfflineCheckinAt: iso(d.lastOfflineCheckinAt),
  };
}
