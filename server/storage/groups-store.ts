/**
 * Static groups: a tree under the built-in root "All", which also holds the
 * built-in "Lost & found". Every device is in exactly one group.
 */
import crypto from 'node:crypto';
import { RollcallError } from '../../common/errors.js';
import type { Sql } from './db.js';
import { LOST_FOUND_GROUP_ID, ROOT_GROUP_ID } from './migrations.js';

/** The kinds of group; built-ins cannot be deleted, renamed or moved. */
export type GroupKind = 'root' | 'lost_found' | 'static';

/** A group as stored. */
export interface Group {
  readonly id: string;
  readonly parentId: string | null;
  readonly name: string;
  readonly kind: GroupKind;
  readonly createdAt: number;
}

/** A group with its path, for display and APIs. */
export interface GroupWithPath extends Group {
  /** Names from the root down, joined with "/", e.g. `All/Acme/Office`. */
  readonly path: string;
}

interface GroupRow {
  id: string;
  parent_id: string | null;
  name: string;
  kind: GroupKind;
  created_at: number;
}

const toGroup = (r: GroupRow): Group => ({ id: r.id, parentId: r.parent_id, name: r.name, kind: r.kind, createdAt: r.created_at });

/** Checks a group name given by a user. */
export function validateGroupName(name: string): string {
  const trimmed = name.trim();
  if (trimmed.length === 0 || trimmed.length > 128 || trimmed.includes('/') || [...trimmed].some((ch) => ch.charCodeAt(0) < 0x20)) {
    throw new RollcallError('GROUP_NAME_INVALID', 'a group name is 1-128 characters and contains no "/" or control characters');
  }
  return trimmed;
}

/** Adds paths to a flat list of groups. */
export function withPaths(groups: readonly Group[]): GroupWithPath[] {
  const byId = new Map(groups.map((g) => [g.id, g]));
  const pathOf = (g: Group, depth = 0): string => {
    const parent = g.parentId ? byId.get(g.parentId) : undefined;
    if (!parent || depth > 64) return g.name;
    return `${pathOf(parent, depth + 1)}/${g.name}`;
  };
  return groups.map((g) => ({ ...g, path: pathOf(g) }));
}

/** Storage of static groups. */
export class GroupsStore {
  constructor(private readonly sql: Sql) {}

  /** Every group with its path, root first, then by path. */
  async list(): Promise<GroupWithPath[]> {
    const rows = await this.sql.all<GroupRow>('SELECT * FROM groups');
    return withPaths(rows.map(toGroup)).sort((a, b) => (a.kind === 'root' ? -1 : b.kind === 'root' ? 1 : a.path.localeCompare(b.path)));
  }

  /**
   * The path of one group, or undefined: walks up from the group alone
   * (one statement, depth-bounded like withPaths), where {@link get} reads
   * every group. For hot paths such as an agent connecting.
   */
  async pathOf(id: string): Promise<string | undefined> {
    const rows = await this.sql.all<{ name: string }>(
      `WITH RECURSIVE chain(id, parent_id, name, depth) AS (
         SELECT id, parent_id, name, 0 FROM groups WHERE id = ?
         UNION ALL
         SELECT g.id, g.parent_id, g.name, chain.depth + 1 FROM groups g JOIN chain ON g.id = chain.parent_id WHERE chain.depth < 64
       ) SELECT name FROM chain ORDER BY depth DESC`,
      [id],
    );
    return rows.length === 0 ? undefined : rows.map((r) => r.name).join('/');
  }

  /** One group with its path, or undefined. */
  async get(id: string): Promise<GroupWithPath | undefined> {
    return (await this.list()).find((g) => g.id === id);
  }

  /**
   * Finds a group by id (`grp_…`) or path. A path may omit the leading
   * `All/` and may start with "/"; matching is exact.
   */
  async resolve(idOrPath: string): Promise<GroupWithPath> {
    const groups = await this.list();
    const byId = groups.find((g) => g.id === idOrPath);
    if (byId) return byId;
    let path = idOrPath.trim().replace(/^\/+|\/+$/g, '');
    if (path !== 'All' && !path.startsWith('All/')) path = `All/${path}`;
    const byPath = groups.find((g) => g.path === path);
    if (!byPath) throw new RollcallError('GROUP_NOT_FOUND', `no group "${idOrPath}"`);
    return byPath;
  }

  /** Creates a group under a parent; fails if the name is taken there. */
  async create(parentId: string, name: string): Promise<GroupWithPath> {
    const clean = validateGroupName(name);
    const parent = await this.get(parentId);
    if (!parent) throw new RollcallError('GROUP_NOT_FOUND', `no parent group "${parentId}"`);
    if (parent.kind === 'lost_found') throw new RollcallError('GROUP_BUILTIN', 'Lost & found cannot hold subgroups');
    const id = `grp_${crypto.randomBytes(8).toString('hex')}`;
    try {
      await this.sql.run('INSERT INTO groups (id, parent_id, name, kind, created_at) VALUES (?, ?, ?, ?, ?)', [
        id,
        parentId,
        clean,
        'static',
        Date.now(),
      ]);
    } catch (err) {
      if (/UNIQUE/.test(String(err))) throw new RollcallError('GROUP_EXISTS', `"${parent.path}" already has a group "${clean}"`, { cause: err });
      throw err;
    }
    return (await this.get(id))!;
  }

  /**
   * Creates every missing group along a path (like `mkdir -p`) and returns
   * the last one.
   */
  async ensurePath(path: string): Promise<GroupWithPath> {
    const parts = path.trim().replace(/^\/+|\/+$/g, '').split('/').filter(Boolean);
    if (parts[0] === 'All') parts.shift();
    if (parts.length === 0) throw new RollcallError('GROUP_NAME_INVALID', 'a group path needs at least one name below All');
    let current = (await this.get(ROOT_GROUP_ID))!;
    for (const part of parts) {
      const name = validateGroupName(part);
      const parent = current;
      const find = async () => (await this.list()).find((g) => g.parentId === parent.id && g.name === name);
      const existing = await find();
      try {
        current = existing ?? (await this.create(parent.id, name));
      } catch (err) {
        // Another request created the same group meanwhile: use it.
        const raced = err instanceof RollcallError && err.code === 'GROUP_EXISTS' ? await find() : undefined;
        if (!raced) throw err;
        current = raced;
      }
    }
    return current;
  }

  /** Renames a non-built-in group; fails if a sibling has the name. */
  async rename(id: string, name: string): Promise<GroupWithPath> {
    const clean = validateGroupName(name);
    const g = await this.get(id);
    if (!g) throw new RollcallError('GROUP_NOT_FOUND', `no group "${id}"`);
    if (g.kind !== 'static') throw new RollcallError('GROUP_BUILTIN', `"${g.path}" is built in and cannot be renamed`);
    await this.runUnique(() => this.sql.run('UPDATE groups SET name = ? WHERE id = ?', [clean, id]), g.parentId, clean);
    return (await this.get(id))!;
  }

  /** Moves a non-built-in group (with its subgroups and devices) under another group. */
  async move(id: string, parentId: string): Promise<GroupWithPath> {
    const groups = await this.list();
    const g = groups.find((x) => x.id === id);
    const parent = groups.find((x) => x.id === parentId);
    if (!g || !parent) throw new RollcallError('GROUP_NOT_FOUND', `no group "${g ? parentId : id}"`);
    if (g.kind !== 'static') throw new RollcallError('GROUP_BUILTIN', `"${g.path}" is built in and cannot be moved`);
    if (parent.kind === 'lost_found') throw new RollcallError('GROUP_BUILTIN', 'Lost & found cannot hold subgroups');
    if (parent.id === g.id || parent.path.startsWith(`${g.path}/`)) {
      throw new RollcallError('GROUP_MOVE_INTO_ITSELF', `"${g.path}" cannot move into itself or its own subgroup`);
    }
    await this.runUnique(() => this.sql.run('UPDATE groups SET parent_id = ? WHERE id = ?', [parentId, id]), parentId, g.name);
    return (await this.get(id))!;
  }

  private async runUnique(write: () => Promise<unknown>, parentId: string | null, name: string): Promise<void> {
    try {
      await write();
    } catch (err) {
      if (/UNIQUE/.test(String(err))) {
        const parent = parentId ? await this.get(parentId) : undefined;
        throw new RollcallError('GROUP_EXISTS', `"${parent?.path ?? 'All'}" already has a group "${name}"`, { cause: err });
      }
      throw err;
    }
  }

  /** Deletes an empty, non-built-in group with no subgroups. */
  async delete(id: string): Promise<void> {
    const g = await this.get(id);
    if (!g) throw new RollcallError('GROUP_NOT_FOUND', `no group "${id}"`);
    if (g.id === ROOT_GROUP_ID || g.id === LOST_FOUND_GROUP_ID) throw new RollcallError('GROUP_BUILTIN', `"${g.path}" is built in and cannot be deleted`);
    const child = await this.sql.get('SELECT 1 FROM groups WHERE parent_id = ? LIMIT 1', [id]);
    const device = await this.sql.get('SELECT 1 FROM devices WHERE group_id = ? LIMIT 1', [id]);
    if (child || device) throw new RollcallError('GROUP_NOT_EMPTY', `"${g.path}" still holds groups or devices`);
    await this.sql.run('DELETE FROM groups WHERE id = ?', [id]);
  }
}
