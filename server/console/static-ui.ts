/**
 * Serves the web console's files (built by `npm run build` into dist/ui)
 * from memory: `/` is the page, `/ui/<file>` its script and styles. No CDN
 * and no network: everything the page needs comes from here.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HttpsApp } from '../http-common.js';

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.map': 'application/json',
};

/** Where the built console lives: next to the compiled server (dist/ui), or dist/ui of the repository when run from source. */
export function uiDirCandidates(): string[] {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return [path.resolve(here, '../../ui'), path.resolve(here, '../../dist/ui')];
}

interface UiFile {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

function loadUi(dir: string | undefined): Map<string, UiFile> {
  const files = new Map<string, UiFile>();
  if (!dir) return files;
  for (const name of fs.readdirSync(dir)) {
    const type = TYPES[path.extname(name)];
    if (!type) continue;
    const body = fs.readFileSync(path.join(dir, name));
    files.set(name, { body, type, etag: `"${crypto.createHash('sha256').update(body).digest('base64url').slice(0, 16)}"` });
  }
  return files;
}

/** Registers `/` and `/ui/:file`. Returns whether the console was found. */
export function registerStaticUi(app: HttpsApp, dir = uiDirCandidates().find((d) => fs.existsSync(path.join(d, 'index.html')))): boolean {
  const files = loadUi(dir);
  const send = (name: string, ifNoneMatch: string | undefined, reply: import('fastify').FastifyReply) => {
    const f = files.get(name);
    if (!f) return reply.code(404).send({ error: { code: 'NOT_FOUND', message: `no file ${name}` } });
    void reply.header('cache-control', 'no-cache').header('etag', f.etag);
    if (ifNoneMatch === f.etag) return reply.code(304).send();
    return reply.type(f.type).send(f.body);
  };
  app.get('/', { config: { access: 'public' } }, async (req, reply) => {
    if (!files.has('index.html')) {
      return reply.code(503).type('text/plain; charset=utf-8').send('The web console is not built: run "npm run build" (the REST API under /api/ works without it).\n');
    }
    return send('index.html', req.headers['if-none-match'], reply);
  });
  app.get<{ Params: { file: string } }>('/ui/:file', { config: { access: 'public' } }, async (req, reply) => send(req.params.file, req.headers['if-none-match'], reply));
  return files.size > 0;
}
