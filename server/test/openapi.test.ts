import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from '../../test/support/harness.js';

const h = new Harness();
afterEach(() => h.cleanup());

type Doc = { openapi: string; paths: Record<string, Record<string, { 'x-rollcall-access': string; requestBody?: unknown; parameters: { name: string; in: string }[] }>> };

/** `METHOD /path` with every path parameter written `{}`. */
const norm = (method: string, p: string) => `${method.toUpperCase()} ${p.split('?')[0]!.replace(/:[^/]+|\{[^}]+\}/g, '{}')}`;

function routesInApiDoc(): Set<string> {
  const doc = fs.readFileSync(path.resolve(import.meta.dirname, '../../docs/api.md'), 'utf8');
  return new Set([...doc.matchAll(/^\| (GET|POST|DELETE|PUT|PATCH) \| `([^`]+)` \|/gm)].map((m) => norm(m[1]!, m[2]!)));
}

describe('the OpenAPI document', () => {
  it('describes exactly the routes of docs/api.md, each of which the server really serves', async () => {
    const s = await h.startServer();
    const res = await s.api<Doc>('GET', '/api/openapi.json', undefined, null);
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe('3.1.0');
    const served = new Set<string>();
    for (const [p, ops] of Object.entries(res.body.paths)) {
      if (!p.startsWith('/api/') && !p.startsWith('/.well-known/')) continue;
      for (const m of Object.keys(ops)) served.add(norm(m, p));
    }
    const documented = routesInApiDoc();
    expect(documented.size).toBeGreaterThanOrEqual(30);
    expect([...documented].filter((r) => !served.has(r)).sort()).toEqual([]);
    expect([...served].filter((r) => !documented.has(r)).sort()).toEqual([]);
    // Each one exists: an unknown route answers NOT_FOUND, these never do.
    for (const r of served) {
      const [method, p] = r.split(' ') as ['GET' | 'POST' | 'DELETE', string];
      if (p === '/api/v1/feed' || p === '/api/v1/instance/delete') continue; // a stream; and a deletion we do not try
      const answer = await s.api<{ error?: { code: string } }>(method, p.replace(/\{\}/g, 'x'), method === 'GET' || method === 'DELETE' ? undefined : {});
      expect({ r, code: answer.body?.error?.code }).not.toEqual({ r, code: 'NOT_FOUND' });
    }
  });

  it('carries the request schemas: bodies, path and query parameters, and the access of each operation', async () => {
    const s = await h.startServer();
    const { body } = await s.api<Doc>('GET', '/api/openapi.json', undefined, null);
    const move = body.paths['/api/v1/devices/{id}/move']!.post!;
    expect(move.parameters).toContainEqual(expect.objectContaining({ name: 'id', in: 'path' }));
    expect(JSON.stringify(move.requestBody)).toContain('"group"');
    expect(move['x-rollcall-access']).toBe('scoped');
    const list = body.paths['/api/v1/devices']!.get!;
    expect(list.parameters.map((p) => p.name)).toEqual(expect.arrayContaining(['group', 'q', 'status', 'band', 'sort', 'order', 'limit', 'offset']));
    expect(body.paths['/api/v1/msp/link']!.post!['x-rollcall-access']).toBe('admin');
    expect(body.paths['/api/v1/session']!.post!['x-rollcall-access']).toBe('public');
  });
});
