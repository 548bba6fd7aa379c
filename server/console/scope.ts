/**
 * Who may see what on the console port. A principal (a logged-in user or
 * an API token) is either an admin, who sees everything, or scoped to a
 * home group, who sees that group's subtree and nothing else. Every route
 * asks this one module; out-of-scope objects answer exactly as unknown ones
 * do (404), so ids cannot be probed.
 */
import { httpError } from '../errors.js';
import type { GroupWithPath } from '../storage/groups-store.js';

/** An authenticated caller of the console port. */
export interface Principal {
  readonly kind: 'session' | 'token';
  /** User id (`usr_…`) or API token id (`api_…`). */
  readonly id: string;
  /** User name or token name, for logs. */
  readonly name: string;
  readonly role: 'admin' | 'customer_admin';
  /** The root of what a scoped principal sees; null for admins. */
  readonly homeGroupId: string | null;
  /** The session's CSRF token; null for API tokens (they carry no ambient credentials). */
  readonly csrfToken: string | null;
}

/** What one principal sees, resolved against the current group tree. */
export interface Scope {
  readonly admin: boolean;
  /** The home group's id (null for admins). */
  readonly homeGroupId: string | null;
  /** Every visible group id; null: all of them. */
  readonly groupIds: ReadonlySet<string> | null;
  /** True when the group is visible. */
  sees(groupId: string | null | undefined): boolean;
}

/** The ids of a group and every group below it. */
export function subtreeIds(groups: readonly Pick<GroupWithPath, 'id' | 'parentId'>[], rootId: string): string[] {
  const children = new Map<string, string[]>();
  for (const g of groups) {
    if (g.parentId === null) continue;
    const list = children.get(g.parentId) ?? [];
    list.push(g.id);
    children.set(g.parentId, list);
  }
  if (!groups.some((g) => g.id === rootId)) return [];
  const seen = new Set<string>([rootId]); // the tree never has cycles; a broken row must not hang a request
  const stack = [rootId];
  while (stack.length > 0) {
    const id = stack.pop()!;
    for (const c of children.get(id) ?? []) {
      if (seen.has(c)) continue;
      seen.add(c);
      stack.push(c);
    }
  }
  return [...seen];
}

/** Resolves what a principal sees. A scoped principal whose home group is gone sees nothing. */
export function scopeFor(principal: Pick<Principal, 'role' | 'homeGroupId'>, groups: readonly Pick<GroupWithPath, 'id' | 'parentId'>[]): Scope {
  if (principal.role === 'admin' && principal.homeGroupId === null) {
    return { admin: true, homeGroupId: null, groupIds: null, sees: () => true };
  }
  const ids = new Set(principal.homeGroupId ? subtreeIds(groups, principal.homeGroupId) : []);
  return { admin: false, homeGroupId: principal.homeGroupId, groupIds: ids, sees: (id) => !!id && ids.has(id) };
}

/** Visible groups only. */
export function visibleGroups<G extends { readonly id: string }>(scope: Scope, groups: readonly G[]): G[] {
  return scope.groupIds === null ? [...groups] : groups.filter((g) => scope.sees(g.id));
}

/** Throws GROUP_NOT_FOUND (as for an unknown group) when the group is outside the scope. */
export function assertSeesGroup(scope: Scope, group: { readonly id: string }, ref: string): void {
  if (!scope.sees(group.id)) throw httpError('GROUP_NOT_FOUND', `no group "${ref}"`);
}

/** Throws DEVICE_NOT_FOUND (as for an unknown device) when the device is outside the scope. */
export function assertSeesDevice(scope: Scope, device: { readonly id: string; readonly groupId: string }): void {
  if (!scope.sees(device.groupId)) throw httpError('DEVICE_NOT_FOUND', `no device "${device.id}"`);
}
