/**
 * `createTenantPool` and the `TenantPool` it returns: the public face of pg-tenant.
 */
import { currentBinding, runBound, type Binding } from './context.js'
import { PoolMonitor, type TenantPoolStats } from './observe/diagnostics.js'
import type { Finding, PoolDoctorOptions } from './doctor/types.js'
import { checkPool, type PgPoolLike, type QueryConfigLike, type QueryResultLike, type Row } from './driver/index.js'
import { PoolClient, ScopeClient, type TenantClient } from './facade/clients.js'
import { createPoolFacade } from './facade/pool-facade.js'
import {
  InvalidOptionsError,
  InvalidQueryError,
  ScopeClosedError,
  TenantMismatchError,
  TenantPoolError,
  TenantRequiredError,
  asError,
} from './errors.js'
import { ResetPlan } from './scope/reset.js'
import { TenantGate } from './scope/tenant-gate.js'
import {
  isSubmittable,
  NO_TENANT,
  Scope,
  type PoolState,
  type ScopeMode,
  type Submittable,
} from './scope/scope.js'

export type { TenantPoolOptions } from './options.js'
import { analyzeSql, findControl, type TransactionControl } from './scope/sql-shape.js'
import { parsePoolOptions, type TenantPoolOptions } from './options.js'
import { resolveTenant, type ResolvedTenant, type Tenant, type TenantRules } from './tenant.js'

/** The callback of a scope: sync or async. */
export type ScopeCallback<T> = () => T | PromiseLike<T>

/**
 * A tenant-aware wrapper around a pg pool. Create it with {@link createTenantPool}.
 *
 * @example
 * ```ts
 * const db = createTenantPool(new pg.Pool({ connectionString }))
 * const rows = await db.withTenant('org_42', async () => (await db.query('select * from events')).rows)
 * ```
 */
export class TenantPool<P extends PgPoolLike = PgPoolLike> {
  readonly #pool: P
  readonly #rules: TenantRules
  readonly #mode: ScopeMode
  readonly #state: PoolState = {}
  readonly #resolved = new Map<string, ResolvedTenant>()
  #facade: P | undefined

  /** Prefer {@link createTenantPool}; the options are validated here, before any query. */
  constructor(pool: P, options: TenantPoolOptions = {}) {
    if (typeof pool?.connect !== 'function') {
      throw new InvalidOptionsError('createTenantPool needs a pg.Pool (or an object with connect())')
    }
    const parsed = parsePoolOptions(options)
    // A pg the driver cannot drive is refused now, with the reason, never run into a wrong result.
    checkPool(pool)
    if (!parsed.prepareTenantStatement) this.#state.preparePrefix = false
    this.#pool = pool
    this.#mode = parsed.scope
    this.#rules = { setting: parsed.setting, roles: parsed.roles, maxValueLength: parsed.maxValueLength }
    this.#state.monitor = new PoolMonitor(parsed.verifyRate, parsed.setting)
    if (!parsed.allowRlsBypass) this.#state.loginCheck = 'pending'
    this.#state.reset = new ResetPlan(this.#rules.setting)
    this.#state.report = (error) => reportError(pool, error)
    // Only with maxPerTenant: without it no scope passes a gate, and nothing costs more.
    if (parsed.quota !== undefined) this.#state.gate = new TenantGate(parsed.quota, parsed.setting)
  }

  /**
   * Runs `fn` as `tenant` on one pooled client. Scope `transaction`: one transaction, committed
   * when `fn` resolves and rolled back when it throws. The client is taken on the first query (a
   * scope that sends none takes none) and goes back to the pool only once its state is confirmed
   * clean; otherwise it is destroyed. Nested in a scope of the same tenant it joins that scope; of
   * another tenant it throws `TenantMismatchError`.
   *
   * @example
   * ```ts
   * const events = await db.withTenant('org_42', async () => {
   *   await db.query('insert into events (kind) values ($1)', ['signup'])
   *   return (await db.query('select * from events')).rows // only org_42's rows
   * })
   * await db.withTenant({ role: 'sales_7' }, () => db.query('select * from clients'))
   * ```
   */
  async withTenant<T>(tenant: Tenant, fn: ScopeCallback<T>): Promise<T> {
    const resolved = this.#resolve(tenant)
    const bound = currentBinding(this)
    if (bound?.kind === 'scope') {
      if (bound.scope.closed) throw new ScopeClosedError()
      if (bound.tenant.key !== resolved.key) throw new TenantMismatchError()
      return await fn() // join: same tenant, same client, same transaction
    }
    if (bound?.kind === 'identity' && bound.tenant.key !== resolved.key) {
      throw new TenantMismatchError()
    }
    if (this.#mode === 'session' && this.#state.sessionPoolingError) throw this.#state.sessionPoolingError
    return this.#inScope(new Scope(this.#pool, resolved, this.#mode, this.#state), fn)
  }

  /**
   * Binds `tenant` for everything `fn` starts, synchronously or later, without taking a client:
   * each `db.query` inside runs alone, scoped to the tenant, and `db.transaction` opens a scope.
   * This is what the Express and Fastify adapters use for a request. Returns what `fn` returns.
   *
   * @example
   * ```ts
   * app.use((req, res, next) => db.runWithTenant(req.get('x-org-id')!, next))
   * await db.runWithTenant('org_42', () => db.query('select * from events'))
   * ```
   */
  runWithTenant<T>(tenant: Tenant, fn: () => T): T {
    const resolved = this.#resolve(tenant)
    const bound = currentBinding(this)
    if (bound?.kind === 'scope') {
      if (bound.scope.closed) throw new ScopeClosedError()
      if (bound.tenant.key !== resolved.key) throw new TenantMismatchError()
      return startInside(fn())
    }
    if (bound?.kind === 'identity' && bound.tenant.key !== resolved.key) {
      throw new TenantMismatchError()
    }
    return runBound(this, { kind: 'identity', tenant: resolved }, () => startInside(fn()))
  }

  /**
   * The explicit opt-out of fail-closed: inside `fn`, `db.query` runs with no tenant applied, as
   * the login role (migrations, cross-tenant admin jobs). RLS still applies to the login role, so
   * a non-owner login role sees no tenant rows here.
   *
   * @example
   * ```ts
   * await db.withoutTenant(() => db.query('select count(*) from organisations'))
   * ```
   */
  withoutTenant<T>(fn: () => T): T {
    return runBound(this, { kind: 'none' }, fn)
  }

  /**
   * Sends a query as the tenant bound here: through the scope's client in `withTenant`, as a
   * single scoped query in `runWithTenant` (one round trip: the tenant's `set_config` and the
   * statement share one Sync). With no tenant bound it rejects with `TenantRequiredError` and never
   * touches the pool. Errors from PostgreSQL arrive unchanged.
   *
   * A pg submittable (pg-cursor, pg-query-stream) resolves to itself once queued; it runs in a
   * transaction with the tenant applied, and under `runWithTenant` its client goes back when pg is
   * done with it (read it to the end, or close it).
   *
   * @example
   * ```ts
   * await db.query('select * from events where kind = $1', ['signup'])
   * await db.query({ text: 'select id, kind from events', rowMode: 'array' })
   * const cursor = await db.query(new Cursor('select * from events'))
   * ```
   */
  query<R = Row>(text: string, values?: readonly unknown[]): Promise<QueryResultLike<R>>
  query<R = Row>(config: QueryConfigLike): Promise<QueryResultLike<R>>
  query<S extends Submittable>(submittable: S): Promise<S>
  query(textOrConfig: string | QueryConfigLike | Submittable, values?: readonly unknown[]): Promise<unknown> {
    let config: QueryConfigLike | Submittable
    try {
      config = isSubmittable(textOrConfig) ? textOrConfig : toConfig(textOrConfig, values)
    } catch (err) {
      return Promise.reject(err)
    }
    const bound = currentBinding(this)
    if (bound === undefined) return Promise.reject(new TenantRequiredError())
    if (bound.kind === 'scope') {
      return isSubmittable(config) ? bound.scope.submit(config) : bound.scope.query(config)
    }
    if (isSubmittable(config)) return submitAlone(this.#lone(bound), config)
    const shape = analyzeSql(config.text)
    // A lone statement runs in a transaction of its own: transaction control cannot mean anything.
    const control = findControl(shape, LONE_REFUSED)
    if (control !== undefined) return Promise.reject(loneControlError(control))
    const scope = this.#lone(bound)
    // Several statements in one text cannot share the tenant's trip: they run in a transaction.
    if (shape.several) return settle(scope, () => scope.query(config, shape))
    return scope.runAlone(config)
  }

  /** A scope for one statement under `runWithTenant` or `withoutTenant`. */
  #lone(bound: Binding): Scope {
    return new Scope(this.#pool, bound.kind === 'identity' ? bound.tenant : NO_TENANT, 'single', this.#state)
  }

  /**
   * Runs `fn` in a transaction for the tenant bound here. Inside a `withTenant` scope (or another
   * `transaction`) it is a SAVEPOINT, rolled back alone when `fn` throws; under `runWithTenant` it
   * opens a scope of its own. With no tenant bound: `TenantRequiredError`.
   *
   * @example
   * ```ts
   * await db.runWithTenant('org_42', () =>
   *   db.transaction(async () => {
   *     await db.query('insert into orders (total) values ($1)', [10])
   *     await db.query('update stock set n = n - 1')
   *   }),
   * )
   * ```
   */
  async transaction<T>(fn: ScopeCallback<T>): Promise<T> {
    const bound = currentBinding(this)
    if (bound === undefined) throw new TenantRequiredError()
    if (bound.kind === 'scope') {
      if (bound.scope.closed) throw new ScopeClosedError()
      const inner: Binding = { ...bound, depth: bound.depth + 1 }
      return bound.scope.transaction(bound.depth, () => runBound(this, inner, async () => await fn()))
    }
    const tenant = bound.kind === 'identity' ? bound.tenant : NO_TENANT
    return this.#inScope(new Scope(this.#pool, tenant, 'transaction', this.#state), fn)
  }

  /**
   * The tenant bound in the current async context, as it was passed in, or `undefined`.
   *
   * @example
   * ```ts
   * await db.withTenant('org_42', () => db.currentTenant()) // 'org_42'
   * ```
   */
  currentTenant(): Tenant | undefined {
    const bound = currentBinding(this)
    return bound === undefined || bound.kind === 'none' ? undefined : bound.tenant.input
  }

  /**
   * A pg.Pool look-alike for ORMs and query builders that take a Pool (Kysely, Drizzle, Prisma's
   * pg adapter, Knex). It passes `instanceof pg.Pool` for the application's `pg`.
   *
   * - `db.pool.query(...)` is `db.query(...)`, in promise and callback forms.
   * - `db.pool.connect()` inside `withTenant` hands out the scope's own client: `release()` keeps
   *   it in the scope, and the ORM's BEGIN / COMMIT / ROLLBACK become SAVEPOINT / RELEASE /
   *   ROLLBACK TO, so an ORM transaction nests inside the scope. Under `runWithTenant` it checks
   *   out one pg client for the caller that holds no tenant state at session level: each
   *   autocommit statement is a single-trip scoped query (as `db.query`), and the caller's own
   *   BEGIN opens a transaction whose tenant is applied transaction-locally with its next
   *   statement (after any `SET TRANSACTION`); COMMIT carries the reset. Safe behind PgBouncer in
   *   transaction mode. Its `notice`, `notification`, `error` and `end` events reach listeners
   *   attached to it. With no tenant bound it rejects with `TenantRequiredError`.
   * - `end`, `on`/`off`, `totalCount`, `idleCount` and `waitingCount` pass through.
   *
   * @example
   * ```ts
   * import { Kysely, PostgresDialect } from 'kysely'
   * const kysely = new Kysely<DB>({ dialect: new PostgresDialect({ pool: db.pool }) })
   * await db.runWithTenant('org_42', () => kysely.selectFrom('events').selectAll().execute())
   * ```
   */
  get pool(): P {
    // Typed as the wrapped pool: it shares that pool's prototype and answers the same calls.
    return (this.#facade ??= createPoolFacade(this.#pool, {
      query: (textOrConfig, values) => this.query(textOrConfig as string, values),
      connect: () => this.#connectClient(),
    }) as P)
  }

  #connectClient(): Promise<TenantClient> {
    const bound = currentBinding(this)
    if (bound === undefined) return Promise.reject(new TenantRequiredError())
    if (bound.kind === 'scope') {
      if (bound.scope.closed) return Promise.reject(new ScopeClosedError())
      return Promise.resolve(new ScopeClient(bound.scope))
    }
    const tenant = bound.kind === 'identity' ? bound.tenant : NO_TENANT
    const scope = new Scope(this.#pool, tenant, 'client', this.#state)
    return scope.open().then(
      () => new PoolClient(scope, this.#state.report!),
      async (err: unknown) => {
        await scope.close(true, err).catch(() => undefined)
        throw err
      },
    )
  }

  /**
   * Ends the wrapped pool.
   *
   * @example
   * ```ts
   * await db.end()
   * ```
   */
  end(): Promise<void> {
    return this.#pool.end()
  }

  /**
   * Runs the RLS doctor (`checkRls` from `pg-tenant/doctor`) on this pool's database with this
   * pool's `setting`, `roles` and `scope`, as the pool's login role. Only catalogs are read; no
   * tenant is needed. The doctor is not part of the core bundle: it is loaded on the first call.
   *
   * @example
   * ```ts
   * const findings = await db.doctor({ tenantColumn: 'org_id' })
   * if (findings.some((f) => f.severity === 'error')) throw new Error('RLS is not safe')
   * ```
   */
  async doctor(options: PoolDoctorOptions): Promise<Finding[]> {
    const { setting, roles } = this.#rules
    // A relative dynamic import: the bundler links it to the doctor's own entry (dist/doctor.js,
    // or require('./doctor.cjs') in the CJS build), so dist/index.* carry none of its code.
    const { checkRls } = await import('./doctor/index.js')
    return checkRls(this.#pool, { ...options, setting, roles, scope: this.#mode })
  }

  /**
   * This pool's counters since it was created: clients released and destroyed (by reason), and
   * release canary checks run and failed (`verifyRelease`). `dirty` should stay 0: anything else
   * means some code left tenant state on a connection, and pg-tenant destroyed it.
   *
   * @example
   * With `maxPerTenant`, `quota` says how many connections the tenants hold and how many of their
   * operations wait now, how many were refused, and which tenants are busiest (up to 10).
   *
   * @example
   * ```ts
   * const { released, destroyed, destroyedBy, verified, dirty, quota } = db.stats()
   * if (quota !== undefined && quota.waiting > 0) console.log('queued behind their quota:', quota.busiest)
   * ```
   */
  stats(): TenantPoolStats {
    const counters = this.#state.monitor!.stats()
    const gate = this.#state.gate
    return gate === undefined ? counters : { ...counters, quota: gate.stats() }
  }

  /**
   * Validates a tenant. Tenant ids (strings) are resolved once and remembered, up to a bound: the
   * result is immutable, and the same id always resolves the same way under this pool's rules.
   */
  #resolve(tenant: Tenant): ResolvedTenant {
    if (typeof tenant !== 'string') {
      const resolved = resolveTenant(tenant, this.#rules)
      // Every setting a tenant writes is reset on every connection this pool gives back.
      this.#state.reset!.add(resolved.settings.map(([name]) => name))
      return resolved
    }
    let resolved = this.#resolved.get(tenant)
    if (resolved === undefined) {
      resolved = resolveTenant(tenant, this.#rules)
      if (this.#resolved.size >= RESOLVED_CACHE_SIZE) this.#resolved.clear()
      this.#resolved.set(tenant, resolved)
    }
    return resolved
  }

  #inScope<T>(scope: Scope, fn: ScopeCallback<T>): Promise<T> {
    const binding: Binding = { kind: 'scope', tenant: scope.tenant, scope, depth: 0 }
    // Awaited inside the binding, so a lazy thenable (a Drizzle query) starts as this tenant.
    return settle(scope, () => runBound(this, binding, async () => await fn()))
  }
}

// Tenant ids remembered by #resolve: enough for a busy server's working set, small in memory.
const RESOLVED_CACHE_SIZE = 4096

// Transaction control has no meaning in a lone statement, which runs in a transaction of its own.
const LONE_REFUSED = new Set<TransactionControl>(['begin', 'commit', 'rollback', 'chain', 'prepare', 'set-transaction', 'savepoint'])

function loneControlError(control: TransactionControl): InvalidQueryError {
  return new InvalidQueryError(
    `a lone db.query runs in a transaction of its own, so ${control === 'begin' ? 'BEGIN' : 'transaction control'} ` +
      'cannot mean anything there: use db.transaction() or withTenant() for a transaction, or db.pool.connect() ' +
      'for a client that keeps one',
  )
}

/**
 * Reports what no caller can receive (a `db.pool.connect()` client's release): on the pool's
 * 'error' event when it has listeners, as a process warning otherwise (an 'error' event nobody
 * listens for would crash the process).
 */
function reportError(pool: PgPoolLike, error: unknown): void {
  const emitter = pool as unknown as { listenerCount?: (event: string) => number; emit?: (event: string, ...args: unknown[]) => boolean }
  const err = asError(error)
  if (typeof emitter.emit === 'function' && (emitter.listenerCount?.('error') ?? 0) > 0) {
    emitter.emit('error', err)
    return
  }
  const code = err instanceof TenantPoolError ? `PG_TENANT_${err.code}` : 'PG_TENANT_RELEASE_FAILED'
  process.emitWarning(err.message, { type: 'PgTenantWarning', code })
}

/** Queues a submittable in a scope of its own, closed when pg is done with it. */
async function submitAlone<S extends Submittable>(scope: Scope, submittable: S): Promise<S> {
  let closing: Promise<void> | undefined
  const finished = () => {
    closing ??= scope.close(false).catch(() => undefined)
  }
  try {
    return await scope.submit(submittable, finished)
  } catch (err) {
    await scope.close(true, err)
    throw err
  }
}

/**
 * A thenable that is not a native promise (a Drizzle or Knex query builder) starts only when
 * someone calls its `then`. Returned from a scope's callback and awaited outside it, it would run
 * with no tenant bound. So it is started here, inside the binding, and a native promise returned.
 */
function startInside<T>(value: T): T {
  const then = (value as { then?: unknown } | null | undefined)?.then
  if (typeof then !== 'function' || value instanceof Promise) return value
  return Promise.resolve(value) as T
}

/** Runs `fn`, then closes `scope`: rolled back if `fn` threw (its error wins), committed if not. */
async function settle<T>(scope: Scope, fn: () => T | PromiseLike<T>): Promise<T> {
  let result: T
  try {
    result = await fn()
  } catch (err) {
    await scope.close(true, err)
    throw err
  }
  await scope.close(false)
  return result
}

function toConfig(textOrConfig: unknown, values: readonly unknown[] | undefined): QueryConfigLike {
  if (typeof textOrConfig === 'string') {
    return values === undefined ? { text: textOrConfig } : { text: textOrConfig, values }
  }
  if (typeof textOrConfig === 'object' && textOrConfig !== null) {
    const config = textOrConfig as QueryConfigLike
    if (typeof config.text === 'string') {
      return values === undefined ? config : { ...config, values }
    }
  }
  throw new InvalidQueryError('db.query needs SQL text or a { text, values } config object')
}

/**
 * Wraps a pg pool so that every query runs as the right tenant.
 *
 * @param pool - a `pg.Pool` (any pg 8.x) or a look-alike with `connect()` and `end()`
 * @param options - the setting name, the scope kind and the role allow-list
 * @throws InvalidOptionsError when the options cannot be honoured
 *
 * @example
 * ```ts
 * import pg from 'pg'
 * import { createTenantPool } from 'pg-tenant'
 *
 * const db = createTenantPool(new pg.Pool({ connectionString: process.env.DATABASE_URL }), {
 *   setting: 'app.tenant_id',
 * })
 * await db.withTenant('org_42', () => db.query('select * from events'))
 * ```
 */
export function createTenantPool<P extends PgPoolLike>(pool: P, options: TenantPoolOptions = {}): TenantPool<P> {
  return new TenantPool(pool, options)
}

