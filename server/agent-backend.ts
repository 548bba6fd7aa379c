/**
 * What the agent port needs from storage and the CA, behind one narrow
 * interface: the device a client certificate names, enrollment, and the
 * two lookups of the portcheck report route. A single process uses the
 * local implementation below; an agent worker uses one that asks the
 * primary over IPC (cluster/worker-main.ts), so storage keeps one writer
 * and the CA key never leaves the primary.
 */
import type { Logger } from 'pino';
import type { EnrollRequest, EnrollResponse } from '../common/enroll-api.js';
import type { KeyedCert } from '../common/pki.js';
import type { SessionDevice } from './agent-session.js';
import { enroll, type EnrollDeps } from './enroll.js';
import type { ServerErrorCode } from './errors.js';
import type { ConnectReads } from './storage/connect-reads.js';
import type { Storage } from './storage/index.js';
import type { ConnectingDevice } from './storage/devices-store.js';
import type { Observation } from './storage/evidence-store.js';
import type { EnrollmentToken } from './storage/tokens-store.js';

/** Why a check-in upgrade is refused. */
export interface Refusal {
  readonly code: ServerErrorCode;
  readonly message: string;
  /** The device the certificate names, when it is a known one (a revoked device). */
  readonly deviceId?: string;
}

/** The agent port's storage and CA needs. */
export interface AgentBackend {
  readonly instanceId: string;
  /** The device a trusted client certificate (serial, subject CN) belongs to, or why it is refused. */
  lookupDevice(serial: string, cn: string | undefined): Promise<SessionDevice | Refusal>;
  /** Enrolls one agent (throws RollcallError with a SERVER_ERRORS code). */
  enroll(req: EnrollRequest): Promise<EnrollResponse>;
  /** The portcheck report route's lookups. */
  readonly portcheck: {
    readonly enrollTokens: { findBySecret(secret: string): Promise<EnrollmentToken | undefined> };
    readonly evidence: { record(observations: readonly Observation[]): Promise<unknown> };
  };
}

/** What the local backend needs. */
export interface LocalBackendDeps {
  readonly storage: Pick<Storage, 'db' | 'groups' | 'devices' | 'enrollTokens' | 'instanceId' | 'evidence' | 'certRenewals'>;
  /** The CA that enrolls agents now. */
  readonly ca: () => KeyedCert;
  readonly placementProblem?: EnrollDeps['placementProblem'];
  readonly certValiditySec?: number;
  readonly now: () => number;
  readonly log: Logger;
  /**
   * The connect read on a read-only connection of its own, on a statement
   * prepared once (storage/connect-reads.ts), as an agent worker reads it:
   * on the writer's connection each lookup prepared its statement afresh
   * and queued behind the writer's transactions. Absent: the writer's.
   */
  readonly connectReads?: Pick<ConnectReads, 'findForConnect'>;
}

/** Finds the device of a certificate, promoting a renewed certificate on its first use. */
async function lookupDevice(deps: LocalBackendDeps, serial: string, cn: string | undefined): Promise<SessionDevice | Refusal> {
  const { storage } = deps;
  let found = await (deps.connectReads ?? storage.devices).findForConnect(serial);
  if (!found) {
    // A renewed certificate's first connection: it replaces the old one now, and the old one stops mapping to the device.
    const pending = await storage.certRenewals.find(serial);
    if (pending && cn === pending.deviceId && (await storage.certRenewals.promote(serial))) {
      deps.log.info({ deviceId: pending.deviceId, serial }, 'renewed certificate in use; the old one is no longer accepted');
      found = await storage.devices.findForConnect(serial);
    }
  }
  return deviceOrRefusal(found, cn);
}

/**
 * The check-in upgrade's answer for what findForConnect found: unknown
 * (no device, or a CN naming another one), revoked, or the device with its
 * group path. Shared by the primary's lookup and an agent worker's own.
 */
export function deviceOrRefusal(found: { device: ConnectingDevice; lastEventSeq: number; groupPath: string | null } | undefined, cn: string | undefined): SessionDevice | Refusal {
  const device = found?.device;
  if (!found || !device || cn !== device.id) return { code: 'DEVICE_UNKNOWN', message: 'the certificate belongs to no known device' };
  if (device.revokedAt !== null) return { code: 'DEVICE_REVOKED', message: 'the device was revoked', deviceId: device.id };
  return {
    id: device.id,
    group: { id: device.groupId, path: found.groupPath ?? '' },
    lastSeq: device.lastSeq,
    stored: { fingerprint: device.fingerprint, lastAddress: device.lastAddress, lastEventSeq: found.lastEventSeq },
  };
}

/** The backend of a process that owns storage and the CA. */
export function localAgentBackend(deps: LocalBackendDeps): AgentBackend {
  return {
    instanceId: deps.storage.instanceId,
    lookupDevice: (serial, cn) => lookupDevice(deps, serial, cn),
    enroll: (req) => enroll(req, { storage: deps.storage, ca: deps.ca(), now: deps.now, placementProblem: deps.placementProblem, certValiditySec: deps.certValiditySec }),
    portcheck: { enrollTokens: deps.storage.enrollTokens, evidence: deps.storage.evidence },
  };
}
