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
  const files = ['index', 'express', 'fastify', 'doctor', 'testing'].flatMap((e) => [`dist/${e}.js`, `dist/${e}.cjs`, `dist/${e}.d.ts`, `dist/${e}.d.cts`])
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

it('runs db.doctor() from the ESM and CJS builds, loading pg-tenant/doctor on first use', async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [path.join(root, 'tests/integration/programs/doctor-load.cjs')],
    { cwd: root, env: { ...process.env, APP_URL: t.appUrl } },
  )
  const finding = 'error:SESSION_SCOPE_TRANSACTION_POOLING'
  expect(JSON.parse(stdout)).toEqual({
    node: process.version,
    cjsDoctorLoadedBeforeUse: false,
    cjsDbDoctor: finding,
    cjsDoctorLoadedAfterUse: true,
    cjsDoctorErrorIsEsmInstance: true,
    cjsDoctorErrorCode: 'INVALID_OPTIONS',
    esmDbDoctor: finding,
    coreExportsCheckRls: false,
    cjsCheckRls: finding,
    esmCheckRls: finding,
    doctorExports: ['checkRls', 'checkRls'],
    doctorRefusesTenantPool: true,
  })
})

it('keeps the doctor out of the core bundles: only dist/doctor.* (and the CLI) hold its code', () => {
  const dist = path.join(root, 'dist')
  const code = (file: string) => fs.readFileSync(path.join(dist, file), 'utf8')
  // A finding code and a catalog read that only the doctor has.
  const markers = ['POLICY_NO_WITH_CHECK', 'has_table_privilege(s.oid, c.oid, \'TRUNCATE\')']
  const scripts = fs.readdirSync(dist).filter((f) => /\.(c?js)$/.test(f))
  const holders = scripts.filter((f) => markers.some((m) => code(f).includes(m))).sort()
  expect(holders).toEqual(['cli.js', 'doctor.cjs', 'doctor.js'])
  // The core: index.js / index.cjs and the chunks they load statically (entries share chunks:
  // pg-tenant/testing uses the pool too, so the pool may live in a chunk rather than in index.*).
  const staticImports = (file: string): string[] =>
    [...code(file).matchAll(/(?:from\s*|require\()["']\.\/(chunk-[\w-]+\.c?js)["']/g)].map((m) => m[1]!)
  const core = (entry: string): string[] => {
    const seen = new Set<string>([entry])
    for (const file of seen) for (const next of staticImports(file)) seen.add(next)
    return [...seen]
  }
  const esm = core('index.js')
  const cjs = core('index.cjs')
  for (const file of [...esm, ...cjs]) {
    for (const marker of markers) expect(code(file), `${marker} in ${file}`).not.toContain(marker)
  }
  for (const file of ['doctor.js', 'doctor.cjs']) {
    for (const marker of markers) expect(code(file), `${marker} in ${file}`).toContain(marker)
  }
  // The core reaches it only through the lazy import in db.doctor().
  const esmCode = esm.map(code).join('\n')
  const cjsCode = cjs.map(code).join('\n')
  expect(esmCode).toContain('import("./doctor.js")')
  expect(esmCode).not.toMatch(/from\s*["']\.\/doctor\.js["']/)
  expect(cjsCode).toMatch(/Promise\.resolve\(\)\.then\(\(\) => _interopRequireWildcard\(require\("\.\/doctor\.cjs"\)\)\)/)
  expect(cjsCode.match(/require\("\.\/doctor\.cjs"\)/g)).toHaveLength(1)
})

it('refuses a pg it cannot drive from both builds, naming its version', async () => {
  const script = (load: string) => `
    ${load}
    try { createTenantPool(new Old.Pool()); console.log('accepted') }
    catch (e) { console.log(e.code + ': ' + e.message) }`
  const run = async (args: string[]) => (await promisify(execFile)(process.execPath, args, { cwd: root })).stdout.trim()
  const cjs = await run(['-e', script(`const { createTenantPool } = require('pg-tenant'); const Old = require('pg-8-4-0')`)])
  const esm = await run([
    '--input-type=module',
    '-e',
    script(`import { createTenantPool } from 'pg-tenant'; import Old from 'pg-8-4-0'`),
  ])
  for (const out of [cjs, esm]) {
    expect(out).toMatch(/^INVALID_OPTIONS: pg-tenant cannot drive pg 8\.4\.0: its Query writes a statement as parse, bind, describe, execute, flush/)
  }
})

it('keeps every exported class name in both builds: errors print as themselves, never as _class2', async () => {
  // By package name, every runtime entry of package.json "exports"; scripts/pack-check.sh checks
  // the same on the packed tarball.
  const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
  const specifiers = Object.keys(manifest.exports)
    .filter((key) => key !== './package.json')
    .map((key) => (key === '.' ? 'pg-tenant' : `pg-tenant/${key.slice(2)}`))
  const program = `
    const out = []
    const probe = (X) => { try { return new X('probe') } catch { return new X() } }
    for (const specifier of ${JSON.stringify(specifiers)}) {
      for (const [build, mod] of [['esm', await import(specifier)], ['cjs', require(specifier)]]) {
        for (const [name, value] of Object.entries(mod)) {
          if (typeof value !== 'function' || !/^class\\b/.test(Function.prototype.toString.call(value))) continue
          const row = { specifier, build, name, className: value.name }
          if (value.prototype instanceof Error) {
            const err = probe(value)
            Object.assign(row, { errName: err.name, text: String(err).split(':')[0] })
          }
          out.push(row)
        }
      }
    }
    console.log(JSON.stringify(out))`
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--input-type=module', '-e', `import { createRequire } from 'node:module'; const require = createRequire(process.cwd() + '/x.js');${program}`],
    { cwd: root },
  )
  const rows: { specifier: string; build: string; name: string; className: string; errName?: string; text?: string }[] =
    JSON.parse(stdout)
  const errors = rows.filter((row) => row.errName !== undefined)
  // Every error class src/errors.ts declares (TenantPoolError and its subclasses) is exported by
  // the core, in each build, so the loops below cover them all.
  const declared = [...fs.readFileSync(path.join(root, 'src/errors.ts'), 'utf8').matchAll(/^export class (\w+)/gm)]
    .map((m) => m[1])
    .sort()
  expect(declared.length).toBeGreaterThan(10)
  for (const build of ['esm', 'cjs']) {
    const names = errors.filter((row) => row.specifier === 'pg-tenant' && row.build === build).map((row) => row.name)
    expect(names.sort(), build).toEqual(declared)
  }
  for (const row of rows) expect(row.className, `${row.build} ${row.specifier} ${row.name}`).toBe(row.name)
  for (const row of errors) {
    expect([row.errName, row.text], `${row.build} ${row.specifier} ${row.name}`).toEqual([row.name, row.name])
  }
})

it('ships no source maps and no references to them', () => {
  const files = fs.readdirSync(path.join(root, 'dist'))
  expect(files.filter((file) => file.endsWith('.map'))).toEqual([])
  for (const file of files) {
    expect(fs.readFileSync(path.join(root, 'dist', file), 'utf8'), file).not.toContain('sourceMappingURL')
  }
})

it('builds CommonJS without import.meta, which would not parse there', () => {
  const cjs = fs.readdirSync(path.join(root, 'dist')).filter((file) => file.endsWith('.cjs'))
  expect(cjs.length).toBeGreaterThan(4)
  for (const file of cjs) expect(fs.readFileSync(path.join(root, 'dist', file), 'utf8'), file).not.toContain('import.meta')
})
