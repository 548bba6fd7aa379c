import { createRequire } from 'node:module';
import path from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { describe, expect, it } from 'vitest';
import { EnrollRequest, EnrollResponse } from '../../common/enroll-api.js';
import { SERVER_MESSAGE_SCHEMAS } from '../../common/protocol.js';
import { agentValidatorsSource } from '../build-agent.js';

const root = path.resolve(import.meta.dirname, '../..');

/** Loads the precompiled validators the way the executable's bundle does (CommonJS, ajv's runtime helpers). */
function loadPrecompiled(): Map<string, ValidateFunction> {
  const { keys, code } = agentValidatorsSource();
  const module = { exports: {} as Record<string, ValidateFunction> };
  new Function('module', 'exports', 'require', code)(module, module.exports, createRequire(path.join(root, 'package.json')));
  return new Map(keys.map((k, i) => [k, module.exports[`v${i}`]!]));
}

/** Values that break a schema in many ways: wrong types, bounds, missing and extra properties, at the top and one level down. */
function variants(schema: { properties?: Record<string, unknown> }): unknown[] {
  const odd = [null, 0, -1, 1.5, 2 ** 53, '', 'x', 'x'.repeat(20_000), ' bad id ', 'f'.repeat(64), true, [], ['a'], {}, { a: 1 }];
  const out: unknown[] = [null, 1, 'text', [], {}, { extra: 1 }];
  const props = Object.keys(schema.properties ?? {});
  const base: Record<string, unknown> = {};
  for (const p of props) base[p] = 'x';
  out.push(base, { ...base, extra: true });
  for (const p of props) {
    for (const v of odd) {
      out.push({ ...base, [p]: v });
      const rest = { ...base };
      delete rest[p];
      out.push(rest);
    }
  }
  return out;
}

describe('the agent executable precompiles its Ajv validators', () => {
  it('has one for every schema the agent compiles, giving the same result and errors as Ajv at run time', () => {
    const pre = loadPrecompiled();
    const schemas = [...Object.values(SERVER_MESSAGE_SCHEMAS), EnrollRequest, EnrollResponse];
    expect(pre.size).toBe(schemas.length);
    let failures = 0;
    for (const schema of schemas) {
      const validate = pre.get(JSON.stringify(schema));
      expect(validate, JSON.stringify(schema).slice(0, 80)).toBeTypeOf('function');
      const runtime = new Ajv({ strict: true, allErrors: false }).compile(schema);
      for (const value of variants(schema as { properties?: Record<string, unknown> })) {
        const ok = validate!(value);
        expect(ok).toBe(runtime(value));
        expect(validate!.errors ?? null).toEqual(runtime.errors ?? null);
        if (!ok) failures += 1;
      }
    }
    expect(failures).toBeGreaterThan(100);
  });
});
