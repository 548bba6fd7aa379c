/**
 * Console API routes of devices: the paged, filtered, sorted list (served
 * from indexes, so it stays fast at 100,000 devices), one device, revoke
 * and move. Every route narrows to the caller's scope; a device outside it
 * answers DEVICE_NOT_FOUND, exactly like an unknown id.
 */
import { Type, type Static } from '@sinclair/typebox';
import { CloseCode } from '../../common/close-codes.js';
import { deviceView, type ViewContext } from '../device-view.js';
import { httpError } from '../errors.js';
import type { GroupAdmin } from '../group-admin.js';
import type { HttpsApp } from '../http-common.js';
import type { SessionRegistry } from '../session-registry.js';
import type { Storage } from '../storage/index.js';
import { DEVICE_SORTS, type Device, type DevicePageQuery } from '../storage/devices-store.js';
import { scopeOf } from './auth.js';
import { assertSeesDevice, assertSeesGroup, subtreeIds, type Scope } from './scope.js';

/** What the device routes need. */
export interface DeviceRoutesDeps {
  readonly storage: Storage;
  readonly registry: SessionRegistry;
  readonly groupAdmin: GroupAdmin;
  readonly checkinIntervalSec: number;
  /** Called after a device changed group, so live views re-check its scope. */
  readonly onMoved: (deviceId: string) => void;
  readonly now: () => number;
  readonly log: import('pino').Logger;
}

/** Status filters of the list: connection now, or revocation. */
export const DEVICE_STATUS_FILTERS = ['online', 'offline', 'never_connected', 'revoked'] as const;
/** Age-band filters of the list (the model's colours of "last connected"). */
export const DEVICE_BAND_FILTERS = ['recent', 'ok', 'warning', 'error', 'never'] as const;

const MINUTE = 60_000;
const DAY = 86_400_000;
const Digits = Type.String({ pattern: '^[0-9]{1,7}$' });
const DeviceQuery = Type.Object(
  {
    group: Type.Optional(Type.String({ maxLength: 1024 })),
    q: Type.Optional(Type.String({ maxLength: 256 })),
    status: Type.Optional(Type.Union(DEVICE_STATUS_FILTERS.map((s) => Type.Literal(s)))),
    band: Type.Optional(Type.Union(DEVICE_BAND_FILTERS.map((s) => Type.Literal(s)))),
    sort: Type.Optional(Type.Union(DEVICE_SORTS.map((s) => Type.Literal(s)))),
    order: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')])),
    limit: Type.Optional(Digits),
    offset: Type.Optional(Digits),
  },
  { additionalProperties: false },
);
const IdParam = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
const MoveDevice = Type.Object({ group: Type.String({ minLength: 1, maxLength: 1024 }) }, { additionalProperties: false });

/** Most devices one page may hold. */
export const MAX_PAGE = 500;

function bandRange(band: (typeof DEVICE_BAND_FILTERS)[number], now: number): Pick<DevicePageQuery, 'contactSince' | 'contactBefore' | 'neverContacted'> {
  switch (band) {
    case 'recent':
      return { contactSince: now - 10 * MINUTE };
    case 'ok':
      return { contactSince: now - 2 * DAY, contactBefore: now - 10 * MINUTE };
    case 'warning':
      return { contactSince: now - 14 * DAY, contactBefore: now - 2 * DAY };
    case 'error':
      return { contactBefore: now - 14 * DAY };
    case 'never':
      return { neverContacted: true };
  }
}

/** Registers the device routes. */
export function registerDeviceRoutes(app: HttpsApp, deps: DeviceRoutesDeps): void {
  const { storage, registry } = deps;
  const viewContext = async (): Promise<ViewContext> => ({
    groupPaths: new Map((await storage.groups.list()).map((g) => [g.id, g.path])),
    isConnected: (id) => registry.get(id) !== undefined,
    lastDisconnect: (id) => registry.lastDisconnect(id),
    defaultIntervalSec: deps.checkinIntervalSec,
    now: deps.now(),
  });
  const mustGetDevice = async (id: string, scope: Scope): Promise<Device> => {
    const d = await storage.devices.get(id);
    if (!d) throw httpError('DEVICE_NOT_FOUND', `no device "${id}"`);
    assertSeesDevice(scope, d);
    return d;
  };
  const scoped = { access: 'scoped' } as const;

  app.get<{ Querystring: Static<typeof DeviceQuery> }>('/api/v1/devices', { schema: { querystring: DeviceQuery }, config: scoped }, async (req) => {
    const scope = await scopeOf(req, storage);
    const groups = await storage.groups.list();
    const q = req.query;
    let groupIds: string[] | null = scope.groupIds === null ? null : [...scope.groupIds];
    if (q.group) {
      const root = await storage.groups.resolve(q.group).catch(() => undefined);
      if (!root) throw httpError('GROUP_NOT_FOUND', `no group "${q.group}"`);
      assertSeesGroup(scope, root, q.group);
      // The root group's subtree is every group: no filter, so the hostname index serves the page.
      groupIds = root.parentId === null ? groupIds : subtreeIds(groups, root.id);
    }
    const now = deps.now();
    const connected = () => [...registry.values()].map((s) => s.deviceId);
    const status = q.status;
    const limit = q.limit === undefined ? undefined : Math.min(MAX_PAGE, Math.max(1, Number(q.limit)));
    const offset = q.offset === undefined ? 0 : Number(q.offset);
    const page = await storage.devices.page({
      groupIds,
      text: q.q?.trim() || undefined,
      ...(q.band ? bandRange(q.band, now) : {}),
      ...(status === 'online' ? { ids: { include: true, list: connected() }, revoked: false } : {}),
      ...(status === 'offline' ? { ids: { include: false, list: connected() }, contactBefore: now + 1, revoked: false } : {}),
      ...(status === 'never_connected' ? { neverContacted: true, revoked: false } : {}),
      ...(status === 'revoked' ? { revoked: true } : {}),
      sort: q.sort ?? 'hostname',
      descending: q.order === 'desc',
      limit: limit ?? -1,
      offset,
    });
    const ctx = await viewContext();
    return { devices: page.devices.map((d) => deviceView(d, ctx)), total: page.total, offset, limit: limit ?? null };
  });

  app.get<{ Params: Static<typeof IdParam> }>('/api/v1/devices/:id', { schema: { params: IdParam }, config: scoped }, async (req) =>
    deviceView(await mustGetDevice(req.params.id, await scopeOf(req, storage)), await viewContext()),
  );

  app.post<{ Params: Static<typeof IdParam> }>('/api/v1/devices/:id/revoke', { schema: { params: IdParam }, config: scoped }, async (req) => {
    const device = await mustGetDevice(req.params.id, await scopeOf(req, storage));
    const changed = await storage.devices.revoke(device.id, deps.now());
    registry.get(device.id)?.close(CloseCode.REVOKED, 'the device was revoked');
    deps.log.info({ deviceId: device.id, alreadyRevoked: !changed, by: req.principal!.name }, 'device revoked');
    return deviceView((await storage.devices.get(device.id))!, await viewContext());
  });

  app.post<{ Params: Static<typeof IdParam>; Body: Static<typeof MoveDevice> }>(
    '/api/v1/devices/:id/move',
    { schema: { params: IdParam, body: MoveDevice }, config: scoped },
    async (req) => {
      const scope = await scopeOf(req, storage);
      const device = await mustGetDevice(req.params.id, scope);
      const group = await storage.groups.resolve(req.body.group).catch(() => undefined);
      if (!group) throw httpError('GROUP_NOT_FOUND', `no group "${req.body.group}"`);
      assertSeesGroup(scope, group, req.body.group);
      await deps.groupAdmin.assertCanHoldDevices(group);
      await storage.devices.move(device.id, group.id);
      deps.onMoved(device.id);
      deps.log.info({ deviceId: device.id, group: group.path, by: req.principal!.name }, 'device moved');
      return deviceView((await storage.devices.get(device.id))!, await viewContext());
    },
  );
}
