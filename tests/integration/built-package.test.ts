/**
 * Goes through the built package, as users get it: `dist/` loaded by name through package.json
 * "exports", by both `require` and `import` in one process. There must be exactly one
 * AsyncLocalStorage store and one error identity, whichever copy loaded it.
 * `npm test` builds first; this file fails if dist/ is missing.
 */
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
})
afterAll(() => t.drop())

it('has a build to test (run `npm run build` first)', () => {
  const files = ['index', 'express', 'fastify'].flatMap((e) => [`dist/${e}.js`, `dist/${e}.cjs`, `dist/${e}.d.ts`, `dist/${e}.d.cts`])
  for (const file of files) {
    expect(fs.existsSync(path.join(root, file)), file).toBe(true)
  }
})

it('shares one store, one error identity and the diagnostics channels between the ESM and CJS builds', async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [path.join(root, 'tests/integration/programs/dual-load.cjs')],
    { cwd: root, env: { ...process.env, APP_URL: t.appUrl } },
  )
  const out = JSON.parse(stdout)
  expect(out).toEqual({
    node: process.version,
    distinctModules: true, // two copies really were loaded, so the rest is not vacuous
    sameStore: true,
    bindingSeenByCjsCopy: true,
    adapterTenant: 'org_adapter',
    cjsTenant: 'org_dual',
    cjsErrorIsEsmInstance: true,
    cjsErrorIsEsmBase: true,
    cjsErrorCode: 'TENANT_REQUIRED',
    channelHeardBothCopies: 'org_dc_esm,org_dc_cjs',
    scopeIdsDistinct: true,
  })
})
