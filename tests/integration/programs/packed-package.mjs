// Checks pg-tenant as a stranger gets it: run by scripts/pack-check.sh from an empty project that
// installed the packed tarball (plus pg, express and fastify) into node_modules. No database.
//
// Every entry point the installed package.json "exports" lists (read here, so an entry added
// later is covered without editing this file) is loaded through ESM `import()` and CJS
// `require()`, by package name. For each, the two builds must export the same names, every
// exported class must keep its name, and every exported error class must print as itself
// (`err.name`, `String(err)`, the stack) and be recognised by the other build's `instanceof`.
// Then: one AsyncLocalStorage for both builds, and the adapters working across the builds. Prints
// each failed check (every check with PACK_CHECK_VERBOSE=1) and a summary; exits 1 if any failed.
//
// `node packed-package.mjs frameworks=absent` first, before express and fastify are installed:
// they are optional peers, so every entry, the adapters' too, must load without them.
// `node packed-package.mjs frameworks=present` then, with both installed, also runs the adapters
// in them.
//
// Run it from the project's directory: it must sit outside the pg-tenant repository, where the
// name `pg-tenant` would resolve to the repository itself (package self-reference).
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const require = createRequire(pathToFileURL(path.join(process.cwd(), 'noop.js')))
const failures = []
let passed = 0
function check(label, ok, detail = '') {
  if (ok) passed++
  else failures.push(`${label}${detail === '' ? '' : `: ${detail}`}`)
  if (!ok || process.env.PACK_CHECK_VERBOSE === '1') {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${label}${!ok && detail !== '' ? ` (${detail})` : ''}`)
  }
}

const mode = process.argv[2]
if (mode !== 'frameworks=absent' && mode !== 'frameworks=present') {
  console.error('usage: node packed-package.mjs frameworks=absent|frameworks=present')
  process.exit(2)
}
const frameworks = mode === 'frameworks=present'
const resolvable = (name) => {
  try {
    require.resolve(name)
    return true
  } catch {
    return false
  }
}
for (const name of ['express', 'fastify']) {
  check(`${name} is ${frameworks ? '' : 'not '}installed`, resolvable(name) === frameworks)
}

const manifestPath = require.resolve('pg-tenant/package.json')
check(
  'pg-tenant resolves to the installed tarball in node_modules',
  manifestPath === path.join(process.cwd(), 'node_modules', 'pg-tenant', 'package.json'),
  manifestPath,
)
const packageRoot = path.dirname(manifestPath)
const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'))

/** Every file an export condition points at, e.g. { import: { types, default } } → its paths. */
function targets(value) {
  if (typeof value === 'string') return [value]
  if (value === null || typeof value !== 'object') return []
  return Object.values(value).flatMap(targets)
}

const isClass = (v) => typeof v === 'function' && /^class\b/.test(Function.prototype.toString.call(v))
const isErrorClass = (v) => typeof v === 'function' && (v === Error || v.prototype instanceof Error)

/** A probe instance: most error constructors take a message or a name; some take none. */
function construct(ErrorClass) {
  try {
    return new ErrorClass('probe')
  } catch {
    return new ErrorClass()
  }
}

const entries = Object.entries(manifest.exports).filter(([key]) => key !== './package.json')
check('package.json "exports" lists the core entry "."', entries.some(([key]) => key === '.'))
const loaded = {} // specifier → { esm, cjs }
const errorClasses = [] // { specifier, key, esm, cjs }

for (const [key, conditions] of entries) {
  const specifier = key === '.' ? 'pg-tenant' : `pg-tenant/${key.slice(2)}`
  for (const target of targets(conditions)) {
    check(`${specifier}: ${target} is in the package`, fs.existsSync(path.join(packageRoot, target)))
  }
  const hasImport = typeof conditions === 'string' || 'import' in conditions || 'default' in conditions
  const hasRequire = typeof conditions === 'string' || 'require' in conditions || 'default' in conditions
  check(`${specifier}: declares both an import and a require condition`, hasImport && hasRequire)

  let esm
  let cjs
  try {
    esm = await import(specifier)
    check(`${specifier}: loads with import()`, true)
  } catch (err) {
    check(`${specifier}: loads with import()`, false, String(err))
  }
  try {
    cjs = require(specifier)
    check(`${specifier}: loads with require()`, true)
  } catch (err) {
    check(`${specifier}: loads with require()`, false, String(err))
  }
  if (esm === undefined || cjs === undefined) continue
  loaded[specifier] = { esm, cjs }
  console.log(`${specifier}: loaded by import() and require(): ${Object.keys(cjs).length} exports`)

  const esmNames = Object.keys(esm).filter((name) => name !== 'default').sort()
  const cjsNames = Object.keys(cjs).sort()
  check(`${specifier}: exports something`, esmNames.length > 0)
  check(
    `${specifier}: ESM and CJS export the same names`,
    esmNames.join() === cjsNames.join(),
    `esm [${esmNames}] cjs [${cjsNames}]`,
  )
  for (const name of esmNames) {
    for (const [build, value] of [['esm', esm[name]], ['cjs', cjs[name]]]) {
      if (isClass(value)) check(`${specifier} (${build}): class ${name}.name`, value.name === name, value.name)
    }
    if (isErrorClass(esm[name]) && isErrorClass(cjs[name])) {
      errorClasses.push({ specifier, name, esm: esm[name], cjs: cjs[name] })
    }
  }
}

// Every exported error class, from both builds; the core's TenantPoolError family must be there,
// or the loop below would prove nothing.
check(
  'the core exports TenantPoolError and its subclasses',
  errorClasses.some((e) => e.specifier === 'pg-tenant' && e.name === 'TenantPoolError') && errorClasses.length >= 10,
  `${errorClasses.length} error classes`,
)
for (const { specifier, name, esm, cjs } of errorClasses) {
  for (const [build, ErrorClass, Other] of [['esm', esm, cjs], ['cjs', cjs, esm]]) {
    const label = `${specifier} (${build}): ${name}`
    let err
    try {
      err = construct(ErrorClass)
    } catch (e) {
      check(`${label} can be constructed`, false, String(e))
      continue
    }
    check(`${label}: err.name`, err.name === name, err.name)
    // `Name: message`, or `Name` alone for a probe without a message (TenantPoolError's first
    // argument is its code).
    const printsName = (text) => text === name || text.startsWith(`${name}: `) || text.startsWith(`${name}\n`)
    check(`${label}: String(err)`, printsName(String(err)), String(err))
    check(`${label}: err.stack`, printsName(String(err.stack)), String(err.stack).split('\n')[0])
    check(`${label}: instanceof the other build's ${name}`, err instanceof Other)
    if (ErrorClass.code !== undefined) check(`${label}: err.code`, err.code === ErrorClass.code, err.code)
  }
}

// One AsyncLocalStorage: a tenant bound through one build is in the store the other build reads.
const core = loaded['pg-tenant']
if (core !== undefined) {
  const { esm, cjs } = core
  const pg = require('pg')
  check('ESM and CJS were really two copies', esm.createTenantPool !== cjs.createTenantPool)
  check('ESM and CJS tenantStore() are one AsyncLocalStorage', esm.tenantStore() === cjs.tenantStore())
  // No query runs: pg.Pool connects lazily and runWithTenant binds without a connection.
  const dbEsm = esm.createTenantPool(new pg.Pool({ max: 1 }))
  const dbCjs = cjs.createTenantPool(new pg.Pool({ max: 1 }))
  check('outside any scope the CJS store is empty', cjs.tenantStore().getStore() === undefined)
  // The store's value is opaque to users; its `owner` is the pool that bound it (src/context.ts).
  const seenByCjs = dbEsm.runWithTenant('org_esm', () => cjs.tenantStore().getStore()?.owner === dbEsm)
  check('a tenant bound by the ESM build is in the CJS build\'s store', seenByCjs)
  const seenByEsm = dbCjs.runWithTenant('org_cjs', () => esm.tenantStore().getStore()?.owner === dbCjs)
  check('a tenant bound by the CJS build is in the ESM build\'s store', seenByEsm)
  // The CJS Express adapter binds an ESM pool's tenant, as an app with mixed dependencies does.
  const express = loaded['pg-tenant/express']
  if (express !== undefined) {
    const tenant = await new Promise((resolve, reject) => {
      const middleware = express.cjs.tenantMiddleware(dbEsm, { resolve: () => 'org_adapter' })
      middleware({ headers: {} }, {}, (err) => (err ? reject(err) : resolve(dbEsm.currentTenant())))
    })
    check('the CJS Express adapter binds the ESM pool\'s tenant', tenant === 'org_adapter', String(tenant))
  }
  // The ESM Fastify plugin (through its fastify-plugin dependency) in a real Fastify app, binding
  // the CJS pool's tenant for a route.
  const fastify = loaded['pg-tenant/fastify']
  if (fastify !== undefined && frameworks) {
    const { default: Fastify } = await import('fastify')
    const app = Fastify()
    await app.register(fastify.esm.tenantPlugin, { db: dbCjs, resolve: (request) => request.headers['x-org-id'] })
    app.get('/', async () => ({ tenant: dbCjs.currentTenant() }))
    const reply = await app.inject({ url: '/', headers: { 'x-org-id': 'org_fastify' } })
    check('the ESM Fastify plugin binds the CJS pool\'s tenant', reply.body === '{"tenant":"org_fastify"}', reply.body)
    await app.close()
  }
  await Promise.all([dbEsm.end(), dbCjs.end()])
}
check('the Express and Fastify adapters were loaded', 'pg-tenant/express' in loaded && 'pg-tenant/fastify' in loaded)

console.log(
  `${passed} checks passed, ${failures.length} failed: ${entries.length} entries, ` +
    `${errorClasses.length} error classes (${errorClasses.map((e) => e.name).join(', ')})`,
)
if (failures.length > 0) {
  console.error(`packed-package: ${failures.length} check(s) failed (FAIL above)`)
  process.exit(1)
}
