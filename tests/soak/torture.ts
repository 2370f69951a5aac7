/**
 * The torture test: many tenants, a small pool, a random mix of every way to run a query, and
 * faults injected on purpose. It counts what happened and checks the invariants pg-tenant exists
 * for. The CI suite runs a short version (tests/integration/torture.test.ts); `npm run soak` a long
 * one (tests/soak/run.ts).
 *
 * Invariants, each counted:
 * - no operation reads a row of another tenant, and no row is written for another tenant (every
 *   row carries the tenant its writer meant in a payload column; checked on every read and, at
 *   the end, on every row, as superuser);
 * - no committed write is lost, and no write of a scope that failed survives;
 * - every client that went back to the pool was clean: the release canary (`verifyRelease: true`
 *   on every pool) found no dirty client, and probes that read an idle client's state, through
 *   pg-tenant and straight from the pg pool, saw the login role, an empty setting and no rows;
 * - every failure is the one its operation injected, with the right error type or SQLSTATE, or the
 *   collateral of a fault injected around it (a terminated backend, an exhausted pool), within a
 *   time window around that fault; anything else fails the run;
 * - no hang: every operation settles within `deadlineMs`;
 * - the diagnostics channels agree: every scope that started ended, and every client a scope took
 *   was released or destroyed exactly once; nothing is left checked out at the end.
 *
 * The ORM road, `db.pool.connect()`, is tortured the same way: clients under `runWithTenant` (scope
 * kind `'client'`: autocommit statements, the caller's own transactions in every BEGIN form,
 * savepoints, ROLLBACK, a throw or `release(err)` mid-transaction, session state written on purpose
 * with SET ROLE, set_config(..., false) and DO blocks, refused COMMIT AND CHAIN, use after release),
 * inside `withTenant` (the scope's client, transactions as savepoints) and under `withoutTenant`,
 * with faults on held clients (terminated backend, query_timeout, pool exhaustion). On top of the
 * invariants above:
 * - every statement after session dirt runs as the bound tenant and role, and nothing else;
 * - every write of a caller transaction that committed is kept, none of one rolled back is;
 * - each client scope returns its client exactly once (followed by scope id on the channels), every
 *   client handed out is released once by the caller, every `release(err)` destroys its connection
 *   (`'requested'`), and a client pg-tenant cannot confirm clean is destroyed and reported: exactly
 *   one `ReleaseError` on the pool's 'error' event per such destroy, each explained by a fault
 *   injected on that client or a backend terminated around it;
 * - a held client whose backend dies passes the pg client's 'error' event on to its listener.
 *
 * Replay: the report (and both callers, first thing) print the seed; the same seed gives every
 * operation the same kind and choices (PG_TENANT_TORTURE_SEED, `npm run soak -- --seed`).
 */
import diagnostics from 'node:diagnostics_channel'
import { EventEmitter } from 'node:events'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import pg from 'pg'
import {
  createTenantPool,
  diagnosticsChannels,
  InvalidQueryError,
  ReleaseError,
  ScopeClosedError,
  TenantMismatchError,
  TenantRequiredError,
  TransactionAbortedError,
  type DestroyMessage,
  type QueryConfigLike,
  type QueryMessage,
  type QueryResultLike,
  type ReleaseMessage,
  type PgPoolLike,
  type ScopeMessage,
  type Tenant,
  type TenantPool,
  type TenantPoolStats,
} from '../../src/index.js'

export interface TortureOptions {
  /** Login role (not owner, not superuser) connection string, in a database made by createDatabase. */
  readonly appUrl: string
  /** Superuser connection string in the same database. */
  readonly adminUrl: string
  /** Roles the login role may switch to (the fixtures' `roles.sales`). */
  readonly roles: readonly string[]
  /** How many operations to run. */
  readonly operations: number
  /** Stop starting operations after this long (ms); the run then reports `stoppedBy: 'time'`. */
  readonly timeLimitMs?: number
  readonly tenants?: number
  readonly poolSize?: number
  /** Operations in flight at once. */
  readonly concurrency?: number
  /** Each operation must settle within this (ms). */
  readonly deadlineMs?: number
  /**
   * Seed of the operation mix: each operation's kind and every choice it makes (tenant, variant)
   * come from it, whatever the interleaving; the timing of faults is the machine's. Random when
   * absent; the report carries it.
   */
  readonly seed?: number
  /** Called every `progressEvery` operations. */
  readonly onProgress?: (report: TortureReport) => void
  readonly progressEvery?: number
  /** Weights to use instead of the defaults, by operation kind (more terminations, say). */
  readonly weights?: Readonly<Record<string, number>>
}

/** What a fault or an operation is called in the report. */
export type OpKind = (typeof OPS)[number]['kind']

export interface TortureReport {
  readonly seed: number
  operations: number
  stoppedBy: 'count' | 'time'
  durationMs: number
  /** Per kind of operation: how many ran, succeeded, failed as injected, failed as collateral. */
  readonly byKind: Record<string, { ran: number; ok: number; injected: number; collateral: number }>
  /** Failures by the error that was expected: `'<op>: <error>'` or `'collateral <fault>: <error>'`. */
  readonly failures: Record<string, number>
  /** Collateral failures by operation kind, then by what explains them. */
  readonly collateralByKind: Record<string, Record<string, number>>
  terminations: number
  hogs: number
  hogTimeouts: number
  rowsRead: number
  foreignRowsRead: number
  rowsWritten: number
  /** At the end, as superuser: rows whose tenant column is not the tenant their writer meant. */
  foreignRowsWritten: number
  /** Committed writes missing at the end. */
  lostWrites: number
  /** Writes of failed scopes (or floating queries) found at the end. */
  undoneWritesFound: number
  probes: number
  dirtyProbes: number
  hangs: number
  /** Failures that are none of the injected kinds, or an injected fault that did not fail. */
  readonly unexpected: Array<{ op: string; index: number; error: string }>
  /**
   * For the first unexpected failures: what else was running then (kinds and ages), the pg pool's
   * counts, and the longest event-loop stall so far, to tell pg-tenant from the machine.
   */
  readonly diagnosis: string[]
  /** The longest event-loop delay seen during the run, in milliseconds. */
  eventLoopMaxMs: number
  /** What the pools counted (`db.stats()`, summed). */
  stats: TenantPoolStats
  /** What the diagnostics channels carried. */
  readonly channels: {
    scopeStarts: number
    scopeEnds: number
    queries: number
    refusedQueries: number
    releases: number
    verifiedReleases: number
    destroys: number
    destroyedBy: Record<string, number>
  }
  /**
   * `db.pool.connect()` clients under `runWithTenant` / `withoutTenant` (scope kind `'client'`):
   * what the torture asked for and did with them, and what the channels and the pool's 'error'
   * event said became of them.
   */
  readonly clients: {
    /** connect() calls, and those that resolved with a client. */
    connects: number
    handedOut: number
    /** release() / release(err) / done(err) calls by the torture (each client once), with an error. */
    callerReleases: number
    releasedWithError: number
    /** connect() inside withTenant: the scope's own client, no checkout. */
    inScope: number
    /** Channels, kind 'client' only. */
    scopeStarts: number
    scopeEnds: number
    releases: number
    verifiedReleases: number
    destroys: number
    destroyedBy: Record<string, number>
    /** ReleaseErrors on the pool's 'error' event, by what explains them. */
    releaseErrors: number
    readonly releaseErrorsBy: Record<string, number>
    /** Statements that wrote session state on purpose (SET ROLE, set_config(..., false), DO). */
    sessionDirt: number
    /** Transaction control refused with InvalidQueryError (COMMIT AND CHAIN, ...). */
    refusedControl: number
    /** Caller transactions that committed, and those rolled back (on purpose or after an error). */
    commits: number
    rollbacks: number
    /** Serializable transactions that failed with 40001 and were rolled back (not a fault). */
    serializationFailures: number
    /** Backends of held clients terminated on purpose. */
    terminations: number
    /** Of those terminated between statements: clients whose 'error' event the caller never heard. */
    errorEventsMissed: number
  }
  /** Clients the pg pool handed to pg-tenant. */
  scopeCheckouts: number
  /** The pg pool's own `acquire` and `release` events (probes and timed-out waiters included). */
  poolCheckouts: number
  poolReturns: number
  /** Clients still checked out, or callers still waiting, at the end. */
  leakedClients: number
  /** Every invariant that did not hold, in words. Empty: the run passed. */
  readonly violations: string[]
}

class InjectedError extends Error {
  override name = 'InjectedError'
}

/** A tenant a worker acts as, and what its rows carry. */
interface Actor {
  readonly tenant: Tenant
  /** The value of app.tenant_id rows written by it carry (undefined: role only). */
  readonly id: string | undefined
  /** The role it switches to (undefined: none). */
  readonly role: string | undefined
}

interface Context {
  readonly tx: TenantPool
  readonly session: TenantPool
  readonly raw: pg.Pool
  readonly admin: pg.Pool
  readonly appRole: string
  /** Tenant ids, to pick "another tenant" from. */
  readonly ids: readonly string[]
  /** Roles the login role may switch to. */
  readonly roles: readonly string[]
  readonly report: TortureReport
  readonly committed: Set<string>
  readonly committedClients: Set<string>
  /** Payloads of rolled-back transactions (whatever their kind): none may exist at the end. */
  readonly undone: Set<string>
  /** The client scopes the channels announced, by scope id. */
  readonly clientLog: ClientLog
  readonly rnd: () => number
  pick<T>(items: readonly T[]): T
  actor(withRole?: boolean): Actor
  roleActor(): Actor
  nextPayload(actor: Actor): string
  fault(label: string): never
  hogStarted(): () => void
  /** Opens a termination's window now; call the result once a backend was terminated. */
  terminating(): () => void
}

/** What an operation expects: success, or a failure of this shape. */
interface Matcher {
  readonly label: string
  test(err: unknown): boolean
}
type Expectation = Matcher | undefined

const isA = (label: string, cls: abstract new (...a: never[]) => unknown): Matcher => ({
  label,
  test: (e) => e instanceof cls,
})
const sqlstate = (label: string, code: string): Matcher => ({
  label,
  test: (e) => (e as { code?: unknown } | null)?.code === code,
})
const message = (label: string, re: RegExp): Matcher => ({
  label,
  test: (e) => e instanceof Error && re.test(e.message),
})

/** The errors a fault causes in operations that run beside it. */
const COLLATERAL = {
  terminated: [
    sqlstate('57P01 admin shutdown', '57P01'),
    message('connection terminated', /^Connection terminated unexpectedly$/),
    message('client not queryable', /^Client (has encountered a connection error|was closed) and is not queryable$/),
    { label: 'socket reset', test: (e: unknown) => ['ECONNRESET', 'EPIPE'].includes((e as { code?: string })?.code ?? '') },
    // A callback that swallowed the lost connection's error: the scope says it did not commit.
    isA('TransactionAbortedError after a lost connection', TransactionAbortedError),
  ],
  exhausted: [message('pool checkout timeout', /^timeout exceeded when trying to connect$/)],
} satisfies Record<string, Matcher[]>

// How long before an operation started a fault may still cause its failure (a backend terminated
// while its client sat idle in the pool is noticed at the next use).
const TERMINATION_GRACE_MS = 2_000
const HOG_GRACE_MS = 1_500
const CONNECTION_TIMEOUT_MS = 1_000
const HOG_SLEEP_S = 1.2

const EVENTS_READ = `select org_id, payload from events where kind = 'torture' order by id desc limit 10`
const CLIENTS_READ = `select name, salesperson from clients order by id desc limit 10`
const PROBE_SQL = `select current_user::text as cu, session_user::text as su,
  coalesce(current_setting('app.tenant_id', true), '') as tid, (select count(*) from events)::int as n`

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

async function readEvents(c: Context, db: Queryable, actor: Actor): Promise<void> {
  const { rows } = (await db.query(EVENTS_READ)) as { rows: Array<{ org_id: string; payload: string }> }
  c.report.rowsRead += rows.length
  for (const row of rows) {
    if (row.org_id !== actor.id || !row.payload.startsWith(`${actor.id}|`)) {
      c.report.foreignRowsRead++
      c.fault(`read a foreign row as ${JSON.stringify(actor.tenant)}: ${JSON.stringify(row)}`)
    }
  }
}

async function writeEvent(c: Context, db: Queryable, actor: Actor, kind = 'torture'): Promise<string> {
  const payload = c.nextPayload(actor)
  const { rows } = (await db.query('insert into events (kind, payload) values ($1, $2) returning org_id', [kind, payload])) as {
    rows: Array<{ org_id: string }>
  }
  c.report.rowsWritten++
  if (rows[0]?.org_id !== actor.id) c.fault(`wrote a row for ${rows[0]?.org_id} as ${actor.id}`)
  return payload
}

async function readClients(c: Context, db: Queryable, actor: Actor): Promise<void> {
  const { rows } = (await db.query(CLIENTS_READ)) as { rows: Array<{ name: string; salesperson: string }> }
  c.report.rowsRead += rows.length
  for (const row of rows) {
    if (row.salesperson !== actor.role || !row.name.startsWith(`${actor.role}|`)) {
      c.report.foreignRowsRead++
      c.fault(`read a foreign client as ${actor.role}: ${JSON.stringify(row)}`)
    }
  }
}

async function writeClient(c: Context, db: Queryable, actor: Actor): Promise<string> {
  const name = `${actor.role}|${c.nextPayload(actor)}`
  const { rows } = (await db.query('insert into clients (name) values ($1) returning salesperson', [name])) as {
    rows: Array<{ salesperson: string }>
  }
  c.report.rowsWritten++
  if (rows[0]?.salesperson !== actor.role) c.fault(`wrote a client for ${rows[0]?.salesperson} as ${actor.role}`)
  return name
}

const pidOf = async (db: Queryable) => (await db.query('select pg_backend_pid() as pid')).rows[0]!.pid as number

// ---------------------------------------------------------------------------------------------
// db.pool.connect() clients

/** What the read and write helpers need: `db.query`, or a `db.pool.connect()` client. */
interface Queryable {
  query(text: string, values?: readonly unknown[]): Promise<{ rows: any[] }>
}

/** A `db.pool.connect()` client, as an ORM sees it (pg's PoolClient shape). */
interface HeldClient {
  query(text: string | QueryConfigLike, values?: readonly unknown[]): Promise<QueryResultLike<any>>
  query(text: string, values: readonly unknown[] | undefined, callback: (err: Error | undefined, result?: QueryResultLike<any>) => void): void
  release(err?: Error | boolean): void
  on(event: 'error', listener: (err: Error) => void): unknown
  removeListener(event: 'error', listener: (err: Error) => void): unknown
}

/** pg.Pool's callback form of connect(), as db.pool offers it. */
type CallbackConnect = (callback: (err: Error | undefined, client?: HeldClient, done?: (err?: Error) => void) => void) => void

/** A client scope (kind 'client') as the channels announced it. */
interface ClientScope {
  readonly startedAt: number
  /** The fault the torture injected on this client, which explains its release's failure. */
  fault: string | undefined
  returned: boolean
  ended: boolean
}

interface ClientLog {
  readonly scopes: Map<number, ClientScope>
  /** The last client scope started: read right after db.pool.connect() is called (synchronous). */
  lastStart: number | undefined
}

/** A client the torture holds. */
interface Held {
  readonly client: HeldClient
  /** Its scope's id, from the scope:start channel. */
  readonly scopeId: number
  readonly released: boolean
  /** Gives it back once: `client.release(err)`, or the `done(err)` of connect's callback form. */
  release(err?: Error): void
  /** Records a fault injected on this client: it explains a failure to confirm it clean. */
  inject(label: string): void
}

/** `db.pool.connect()` under runWithTenant or withoutTenant, counted; promise or callback form. */
async function connectClient(c: Context, db: TenantPool): Promise<Held> {
  const counts = c.report.clients
  counts.connects++
  const log = c.clientLog
  log.lastStart = undefined
  let done: ((err?: Error) => void) | undefined
  const connecting =
    c.rnd() < 0.25
      ? new Promise<HeldClient>((resolve, reject) => {
          ;(db.pool.connect as unknown as CallbackConnect)((err, client, release) => {
            if (err || !client) return reject(err)
            done = release
            resolve(client)
          })
        })
      : (db.pool.connect() as unknown as Promise<HeldClient>)
  // The scope starts synchronously inside connect(): this is its id.
  const scopeId = log.lastStart
  const client = await connecting
  counts.handedOut++
  if (scopeId === undefined) c.fault('db.pool.connect() handed out a client without a scope start of kind client')
  let released = false
  return {
    client,
    scopeId,
    get released() {
      return released
    },
    release(err) {
      if (released) throw new Error('torture bug: a held client released twice')
      released = true
      counts.callerReleases++
      if (err !== undefined) counts.releasedWithError++
      if (done !== undefined) done(err)
      else client.release(err)
    },
    inject(label) {
      const scope = log.scopes.get(scopeId)
      if (scope !== undefined) scope.fault = label
    },
  }
}

/** Runs `fn` with a client, releasing it afterwards (with release(), as Kysely does) if `fn` did not. */
async function withClient<T>(c: Context, db: TenantPool, fn: (held: Held) => Promise<T>): Promise<T> {
  const held = await connectClient(c, db)
  try {
    return await fn(held)
  } finally {
    if (!held.released) held.release()
  }
}

/** The client's `query(text, values, callback)` form, as a promise. */
function viaCallback(client: HeldClient): Queryable {
  return {
    query: (text, values) =>
      new Promise((resolve, reject) => {
        client.query(text, values, (err, result) => (err ? reject(err) : resolve(result!)))
      }),
  }
}

const STATE_READ = `select current_user::text as cu, coalesce(current_setting('app.tenant_id', true), '') as tid,
  current_setting('transaction_isolation') as iso, txid_current_if_assigned() is not null as wrote`

/** Reads who the session runs as: it must be the actor, and no one else. Returns the row. */
async function checkState(c: Context, q: Queryable, actor: Actor, where: string): Promise<{ iso: string; wrote: boolean }> {
  const row = (await q.query(STATE_READ)).rows[0] as { cu: string; tid: string; iso: string; wrote: boolean } | undefined
  if (row?.cu !== (actor.role ?? c.appRole) || row.tid !== (actor.id ?? '')) {
    c.fault(`${where}: a statement ran as ${JSON.stringify(row)} for ${JSON.stringify(actor.tenant)}`)
  }
  return row
}

/** Awaits `p`, which must fail as `matcher` says: returns the error; rethrows any other. */
async function mustFail(c: Context, p: Promise<unknown>, matcher: Matcher, what: string): Promise<unknown> {
  let failure: unknown
  let failed = false
  try {
    await p
  } catch (err) {
    failure = err
    failed = true
  }
  if (!failed) c.fault(`${what} succeeded; expected ${matcher.label}`)
  if (!matcher.test(failure)) throw failure
  return failure
}

/** A write as `actor` (its events, or its clients for a role-only actor); resolves with the payload. */
const writeAs = (c: Context, q: Queryable, actor: Actor, kind = 'torture') =>
  actor.id === undefined ? writeClient(c, q, actor) : writeEvent(c, q, actor, kind)
const readAs = (c: Context, q: Queryable, actor: Actor) =>
  actor.id === undefined ? readClients(c, q, actor) : readEvents(c, q, actor)

/** A SQL string literal (test code: the values are the torture's own tenant ids and roles). */
const lit = (text: string) => `'${text.replaceAll("'", "''")}'`

/** Another tenant id than `actor`'s. */
function otherId(c: Context, actor: Actor): string {
  for (;;) {
    const id = c.pick(c.ids)
    if (id !== actor.id) return id
  }
}

/** Statements that write tenant state at session level, from SQL no lexer can judge. */
function dirt(c: Context, actor: Actor): { text: string; values?: unknown[] } {
  const other = otherId(c, actor)
  const role = c.pick(c.roles)
  return c.pick([
    { text: `set role ${role}` },
    { text: `select set_config('app.tenant_id', $1, false)`, values: [other] },
    { text: `set app.tenant_id = ${lit(other)}` },
    { text: `do $$ begin perform set_config('app.tenant_id', ${lit(other)}, false); end $$` },
    { text: `do $$ begin perform set_config('role', ${lit(role)}, false); perform set_config('app.tenant_id', ${lit(other)}, false); end $$` },
    { text: `select set_config('role', $1, false), set_config('app.tenant_id', $2, false)`, values: [role, other] },
    // Inside a function: no lexer can see it.
    { text: `select ${LEAVE_TENANT}($1)`, values: [other] },
    // Several statements in one text (the simple protocol).
    { text: `select 1; set app.tenant_id = ${lit(other)}; set role ${role}` },
  ])
}

/** A function that writes the tenant setting at session level (made by runTorture, as superuser). */
const LEAVE_TENANT = 'torture_leave_tenant'

/** How a caller transaction begins, and what it must then run as. */
const BEGINS: ReadonlyArray<{ sql: readonly string[]; iso: string; readOnly?: boolean }> = [
  { sql: ['BEGIN'], iso: 'read committed' },
  { sql: ['start transaction'], iso: 'read committed' },
  { sql: ['begin transaction read write'], iso: 'read committed' },
  { sql: ['BEGIN', 'SET TRANSACTION ISOLATION LEVEL REPEATABLE READ'], iso: 'repeatable read' },
  { sql: ['BEGIN', 'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE'], iso: 'serializable' },
  { sql: ['BEGIN ISOLATION LEVEL REPEATABLE READ'], iso: 'repeatable read' },
  { sql: ['START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE'], iso: 'serializable' },
  { sql: ['START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE'], iso: 'serializable', readOnly: true },
  { sql: ['BEGIN READ ONLY'], iso: 'read committed', readOnly: true },
]
// Two serializable transactions that read and write may fail with 40001: a server outcome that
// only 'client transaction' accepts (it rolls back, and checks that its writes are gone). Every
// other operation begins at read committed or repeatable read, with or without SET TRANSACTION.
const WRITABLE_BEGINS = BEGINS.filter((b) => !b.readOnly && b.iso !== 'serializable')

/** Sends a caller transaction's BEGIN (and SET TRANSACTION); pipelined: not awaited (pg queues). */
async function begin(c: Context, client: HeldClient, modes: (typeof BEGINS)[number], pipelined = false): Promise<void> {
  const sent = modes.sql.map((text) => client.query(text))
  if (!pipelined) await Promise.all(sent)
  else for (const p of sent) p.catch(() => undefined) // the statement that follows reports the failure
}

const ROLLBACKS = ['ROLLBACK', 'rollback work', 'ABORT', 'rollback transaction']
const COMMITS = ['COMMIT', 'commit work', 'END', 'commit and no chain']
/** Transaction control a client must refuse before it reaches the server. */
const REFUSED_CONTROL = [
  'COMMIT AND CHAIN',
  'rollback work and chain',
  'END AND CHAIN',
  'abort and chain',
  "PREPARE TRANSACTION 'pg_tenant_torture'",
  'commit; begin',
  'select 1; rollback',
  'select 1; commit',
  'rollback; select 1',
]

const isSerializationFailure = (err: unknown) => (err as { code?: unknown } | null)?.code === '40001'

/**
 * The operations, with weights. `run` resolves when the operation did what it should, throws what
 * it met otherwise; `expect` says which failure is the injected one.
 */
const OPS = [
  {
    kind: 'single read',
    weight: 14,
    run: async (c: Context) => {
      const a = c.actor()
      await c.tx.runWithTenant(a.tenant, () => readEvents(c, c.tx, a))
    },
  },
  {
    kind: 'single write',
    weight: 8,
    run: async (c: Context) => {
      const a = c.actor()
      c.committed.add(await c.tx.runWithTenant(a.tenant, () => writeEvent(c, c.tx, a)))
    },
  },
  {
    kind: 'withTenant read+write',
    weight: 10,
    run: async (c: Context) => {
      const a = c.actor(true)
      const payload = await c.tx.withTenant(a.tenant, async () => {
        const p = await writeEvent(c, c.tx, a)
        await readEvents(c, c.tx, a)
        return p
      })
      c.committed.add(payload)
    },
  },
  {
    kind: 'transaction + savepoint',
    weight: 6,
    run: async (c: Context) => {
      const a = c.actor()
      const payload = await c.tx.runWithTenant(a.tenant, () =>
        c.tx.transaction(async () => {
          const p = await writeEvent(c, c.tx, a)
          await c.tx
            .transaction(async () => {
              await writeEvent(c, c.tx, a, 'must-not-exist')
              throw new InjectedError('rolled back to the savepoint')
            })
            .catch((err: unknown) => {
              if (!(err instanceof InjectedError)) throw err
            })
          await readEvents(c, c.tx, a)
          return p
        }),
      )
      c.committed.add(payload)
    },
  },
  {
    kind: 'nested, same tenant',
    weight: 4,
    run: async (c: Context) => {
      const a = c.actor(true)
      await c.tx.withTenant(a.tenant, async () => {
        const outer = await pidOf(c.tx)
        const inner = await c.tx.withTenant(a.tenant, () => pidOf(c.tx))
        const bound = await c.tx.runWithTenant(a.tenant, () => pidOf(c.tx))
        if (inner !== outer || bound !== outer) c.fault(`a joined scope ran on another backend`)
      })
    },
  },
  {
    kind: 'role scope',
    weight: 6,
    run: async (c: Context) => {
      const a = c.roleActor()
      const useScope = c.rnd() < 0.5
      const name = useScope
        ? await c.tx.withTenant(a.tenant, async () => {
            const n = await writeClient(c, c.tx, a)
            await readClients(c, c.tx, a)
            return n
          })
        : await c.tx.runWithTenant(a.tenant, () => writeClient(c, c.tx, a))
      c.committedClients.add(name)
    },
  },
  {
    kind: 'session scope',
    weight: 6,
    run: async (c: Context) => {
      const a = c.actor(true)
      await c.session.withTenant(a.tenant, async () => {
        // Autocommit: the write is committed as soon as it returns.
        c.committed.add(await writeEvent(c, c.session, a))
        await readEvents(c, c.session, a)
      })
    },
  },
  {
    kind: 'probe',
    weight: 4,
    run: async (c: Context) => {
      c.report.probes++
      const check = (row: Record<string, unknown> | undefined, via: string) => {
        if (row?.cu !== c.appRole || row.su !== c.appRole || row.tid !== '' || row.n !== 0) {
          c.report.dirtyProbes++
          c.fault(`an idle client (${via}) was dirty: ${JSON.stringify(row)}`)
        }
      }
      if (c.rnd() < 0.5) {
        const db = c.rnd() < 0.5 ? c.tx : c.session
        check((await db.withoutTenant(() => db.query(PROBE_SQL))).rows[0], 'withoutTenant')
        return
      }
      // Straight from the pg pool, bypassing pg-tenant.
      // As every pg user must while a client is checked out: listen for 'error' (a backend
      // terminated between statements), attached in the pool's callback, where the client is
      // handed over (see src/driver/checkout.ts: `await pool.connect()` leaves a window).
      let failure: unknown
      const onError = (err: Error) => {
        failure = err
      }
      const client = await new Promise<pg.PoolClient>((resolve, reject) => {
        c.raw.connect((err, taken) => {
          if (err || !taken) return reject(err)
          taken.on('error', onError)
          resolve(taken)
        })
      })
      try {
        check((await client.query(PROBE_SQL)).rows[0], 'pg pool')
      } catch (err) {
        failure = err
        throw err
      } finally {
        client.removeListener('error', onError)
        client.release(failure instanceof Error ? failure : undefined)
      }
    },
  },
  {
    kind: 'mismatch',
    weight: 6,
    expect: isA('TenantMismatchError', TenantMismatchError),
    run: async (c: Context) => {
      const a = c.actor()
      let b = c.actor()
      while (b.id === a.id) b = c.actor()
      if (c.rnd() < 0.5) {
        await c.tx.withTenant(a.tenant, async () => {
          if (c.rnd() < 0.3) await c.tx.query('select 1')
          return c.tx.withTenant(b.tenant, () => c.tx.query('select 1'))
        })
      } else {
        await c.tx.runWithTenant(a.tenant, () => c.tx.withTenant(b.tenant, () => c.tx.query('select 1')))
      }
    },
  },
  {
    kind: 'no tenant',
    weight: 6,
    expect: isA('TenantRequiredError', TenantRequiredError),
    run: async (c: Context) => {
      await c.pick([c.tx, c.session]).query('select 1')
    },
  },
  {
    kind: 'empty scope',
    weight: 6,
    run: async (c: Context) => {
      const a = c.actor(true)
      const value = await c.pick([c.tx, c.session]).withTenant(a.tenant, () => 42)
      if (value !== 42) c.fault('an empty scope lost its value')
    },
  },
  {
    kind: 'SQL error',
    weight: 4,
    expect: sqlstate('22012 division by zero', '22012'),
    run: async (c: Context) => {
      const a = c.actor(true)
      const db = c.pick([c.tx, c.session])
      if (c.rnd() < 0.5) await db.runWithTenant(a.tenant, () => db.query('select 1/0'))
      else await db.withTenant(a.tenant, async () => {
        await readEvents(c, db, a)
        await db.query('select 1/0')
      })
    },
  },
  {
    kind: 'error thrown mid-scope',
    weight: 3,
    expect: isA('InjectedError', InjectedError),
    run: async (c: Context) => {
      const a = c.actor(true)
      await c.tx.withTenant(a.tenant, async () => {
        await writeEvent(c, c.tx, a, 'must-not-exist')
        throw new InjectedError('thrown mid-scope')
      })
    },
  },
  {
    kind: 'swallowed SQL error',
    weight: 2,
    expect: isA('TransactionAbortedError', TransactionAbortedError),
    run: async (c: Context) => {
      const a = c.actor(true)
      await c.tx.withTenant(a.tenant, async () => {
        await writeEvent(c, c.tx, a, 'must-not-exist')
        await c.tx.query('select 1/0').catch(() => undefined)
      })
    },
  },
  {
    kind: 'floating promise',
    weight: 3,
    expect: isA('ScopeClosedError', ScopeClosedError),
    run: async (c: Context) => {
      const a = c.actor(true)
      const db = c.pick([c.tx, c.session])
      let floating: Promise<unknown> | undefined
      await db.withTenant(a.tenant, async () => {
        if (c.rnd() < 0.5) await readEvents(c, db, a)
        floating = sleep(c.rnd() * 5).then(() =>
          db.query("insert into events (kind, payload) values ('must-not-exist', 'floating')"),
        )
        // Handled now (it may settle before the scope does, or the scope may fail); awaited below.
        floating.catch(() => undefined)
      })
      await floating
    },
  },
  {
    kind: 'statement_timeout',
    weight: 1,
    expect: sqlstate('57014 statement timeout', '57014'),
    run: async (c: Context) => {
      const a = c.actor(true)
      await c.tx.withTenant(a.tenant, async () => {
        await c.tx.query('set local statement_timeout = 20')
        await c.tx.query('select pg_sleep(0.5)')
      })
    },
  },
  {
    kind: 'query_timeout',
    weight: 1,
    expect: message('Query read timeout', /^Query read timeout$/),
    run: async (c: Context) => {
      const a = c.actor(true)
      await c.tx.runWithTenant(a.tenant, () => c.tx.query({ text: 'select pg_sleep(0.3)', query_timeout: 20 }))
    },
  },
  {
    kind: 'query_timeout swallowed',
    weight: 0.5,
    expect: isA('TransactionAbortedError', TransactionAbortedError),
    run: async (c: Context) => {
      const a = c.actor(true)
      await c.tx.withTenant(a.tenant, async () => {
        await writeEvent(c, c.tx, a, 'must-not-exist')
        await c.tx.query({ text: 'select pg_sleep(0.3)', query_timeout: 20 }).catch(() => undefined)
      })
    },
  },
  {
    kind: 'pg_terminate_backend',
    weight: 0.5,
    run: async (c: Context) => {
      // Its window opens before the statement is sent: the victim may see its error first.
      const killed = c.terminating()
      const { rows } = await c.admin.query<{ done: boolean }>(
        `select pg_terminate_backend(pid) as done from pg_stat_activity
          where usename = $1 and backend_type = 'client backend' order by random() limit 1`,
        [c.appRole],
      )
      if (rows[0]?.done) killed()
    },
  },
  {
    kind: 'pool exhaustion',
    weight: 0.03,
    run: async (c: Context) => {
      // Holds every client of the pool for longer than its connectionTimeoutMillis; one more scope
      // than the pool has clients must time out waiting.
      const done = c.hogStarted()
      try {
        const hogs = Array.from({ length: POOL_SIZE + 1 }, () =>
          c.tx.withTenant(c.actor().tenant, () => c.tx.query(`select pg_sleep(${HOG_SLEEP_S})`)),
        )
        const outcomes = await Promise.allSettled(hogs)
        for (const o of outcomes) {
          if (o.status === 'fulfilled') continue
          if (COLLATERAL.exhausted[0]!.test(o.reason)) c.report.hogTimeouts++
          else throw o.reason
        }
      } finally {
        done()
      }
    },
  },
  // -------------------------------------------------------------------------------------------
  // The ORM road: db.pool.connect() clients under runWithTenant (kind 'client'), inside
  // withTenant (the scope's client) and under withoutTenant.
  {
    kind: 'client autocommit',
    weight: 8,
    run: async (c: Context) => {
      const db = c.pick([c.tx, c.session])
      const a = c.rnd() < 0.2 ? c.roleActor() : c.actor(true)
      await db.runWithTenant(a.tenant, () =>
        withClient(c, db, async ({ client }) => {
          const steps = 2 + Math.floor(c.rnd() * 4)
          for (let i = 0; i < steps; i++) {
            const r = c.rnd()
            if (r < 0.2) {
              // Issued together, as pg queues them: the client runs them one after the other.
              const [payload] = await Promise.all([writeAs(c, client, a), readAs(c, client, a), checkState(c, client, a, 'queued autocommit')])
              c.committed.add(payload)
            } else if (r < 0.5) c.committed.add(await writeAs(c, client, a))
            else if (r < 0.6) c.committed.add(await writeAs(c, viaCallback(client), a))
            else if (r < 0.7) await checkState(c, client, a, 'autocommit')
            else await readAs(c, c.rnd() < 0.2 ? viaCallback(client) : client, a)
          }
        }),
      )
    },
  },
  {
    kind: 'client transaction',
    weight: 6,
    run: async (c: Context) => {
      const db = c.pick([c.tx, c.session])
      const a = c.actor(true)
      const modes = c.pick(BEGINS)
      await db.runWithTenant(a.tenant, () =>
        withClient(c, db, async ({ client }) => {
          const written: string[] = []
          try {
            // Sometimes BEGIN is not awaited: the first statement is queued behind it.
            await begin(c, client, modes, c.rnd() < 0.3)
            const steps = 1 + Math.floor(c.rnd() * 4)
            for (let i = 0; i < steps; i++) {
              const r = c.rnd()
              if (r < 0.4 && !modes.readOnly) written.push(await writeEvent(c, client, a))
              else if (r < 0.55) {
                const state = await checkState(c, client, a, `caller transaction (${modes.sql.join('; ')})`)
                if (state.iso !== modes.iso) c.fault(`${modes.sql.join('; ')} ran at ${state.iso}, not ${modes.iso}`)
              } else if (r < 0.7 && !modes.readOnly) {
                // A savepoint rolled back: what it wrote is gone, the tenant stays.
                await client.query(`SAVEPOINT sp_${i}`)
                await writeEvent(c, client, a, 'must-not-exist')
                await client.query(`ROLLBACK TO SAVEPOINT sp_${i}`)
                await checkState(c, client, a, 'after ROLLBACK TO SAVEPOINT')
              } else if (r < 0.8 && !modes.readOnly) {
                await client.query(`SAVEPOINT sp_${i}`)
                written.push(await writeEvent(c, client, a))
                await client.query(`RELEASE SAVEPOINT sp_${i}`)
              } else await readEvents(c, client, a)
            }
            const done = await client.query(c.pick(COMMITS))
            if (done.command !== 'COMMIT') c.fault(`a caller COMMIT answered ${done.command}`)
          } catch (err) {
            if (!isSerializationFailure(err)) throw err
            // Not a fault: two serializable transactions met. The caller rolls back, and nothing
            // the transaction wrote may survive.
            c.report.clients.serializationFailures++
            await client.query('ROLLBACK')
            for (const p of written) c.undone.add(p)
            c.report.clients.rollbacks++
            return
          }
          c.report.clients.commits++
          for (const p of written) c.committed.add(p)
          // Autocommit again, at the default isolation, with the tenant.
          const after = await checkState(c, client, a, 'autocommit after COMMIT')
          if (after.iso !== 'read committed') c.fault(`the isolation of a committed transaction outlived it: ${after.iso}`)
          if (c.rnd() < 0.5) await readEvents(c, client, a)
        }),
      )
    },
  },
  {
    kind: 'client rollback',
    weight: 3,
    run: async (c: Context) => {
      const db = c.pick([c.tx, c.session])
      const a = c.actor(true)
      await db.runWithTenant(a.tenant, () =>
        withClient(c, db, async ({ client }) => {
          await begin(c, client, c.pick(WRITABLE_BEGINS), c.rnd() < 0.3)
          const writes = 1 + Math.floor(c.rnd() * 3)
          for (let i = 0; i < writes; i++) c.undone.add(await writeEvent(c, client, a))
          if (c.rnd() < 0.5) await readEvents(c, client, a)
          const done = await client.query(c.pick(ROLLBACKS))
          if (done.command !== 'ROLLBACK') c.fault(`a caller ROLLBACK answered ${done.command}`)
          c.report.clients.rollbacks++
          await checkState(c, client, a, 'autocommit after ROLLBACK')
          await readEvents(c, client, a)
        }),
      )
    },
  },
  {
    kind: 'client throws mid-transaction',
    weight: 2,
    expect: isA('InjectedError', InjectedError),
    run: async (c: Context) => {
      const db = c.pick([c.tx, c.session])
      const a = c.actor(true)
      // withClient releases it with release(), mid-transaction: pg-tenant must roll it back.
      await db.runWithTenant(a.tenant, () =>
        withClient(c, db, async ({ client }) => {
          await begin(c, client, c.pick(WRITABLE_BEGINS))
          c.undone.add(await writeEvent(c, client, a))
          if (c.rnd() < 0.5) c.undone.add(await writeEvent(c, client, a))
          if (c.rnd() < 0.5) await readEvents(c, client, a)
          throw new InjectedError('thrown inside a caller transaction')
        }),
      )
    },
  },
  {
    kind: 'client release(err)',
    weight: 2,
    run: async (c: Context) => {
      const db = c.pick([c.tx, c.session])
      const a = c.actor(true)
      await db.runWithTenant(a.tenant, () =>
        withClient(c, db, async (held) => {
          const { client } = held
          if (c.rnd() < 0.5) {
            // Autocommit: what was written is committed; the connection is destroyed all the same.
            c.committed.add(await writeEvent(c, client, a))
          } else {
            // Mid-transaction: destroying the connection aborts the transaction.
            await begin(c, client, c.pick(WRITABLE_BEGINS))
            c.undone.add(await writeEvent(c, client, a))
          }
          held.release(new InjectedError('the caller does not trust this connection'))
        }),
      )
    },
  },
  {
    kind: 'client failed statement',
    weight: 2,
    run: async (c: Context) => {
      const db = c.pick([c.tx, c.session])
      const variant = c.rnd()
      // The children table is granted to the login role only: no role for its variant.
      const a = c.actor(variant >= 0.25 && variant < 0.4 ? false : true)
      const divide = sqlstate('22012 division by zero', '22012')
      await db.runWithTenant(a.tenant, () =>
        withClient(c, db, async ({ client }) => {
          if (variant < 0.25) {
            // Autocommit: the failed statement took its implicit transaction with it.
            await mustFail(c, client.query('select 1/0'), divide, 'select 1/0')
            c.committed.add(await writeEvent(c, client, a))
          } else if (variant < 0.4) {
            // A deferred constraint fails the COMMIT itself: PostgreSQL rolls the transaction back.
            await begin(c, client, c.pick(WRITABLE_BEGINS))
            c.undone.add(await writeEvent(c, client, a))
            await client.query('insert into children (parent_id) values (404)')
            await mustFail(c, client.query('COMMIT'), sqlstate('23503 foreign key violation', '23503'), 'COMMIT of a dangling child')
            c.report.clients.rollbacks++
          } else {
            // In a caller transaction: the error aborts it (the first statement may be the one
            // that carries the tenant), the caller rolls back.
            await begin(c, client, c.pick(WRITABLE_BEGINS))
            if (variant < 0.8) c.undone.add(await writeEvent(c, client, a))
            await mustFail(c, client.query('select 1/0'), divide, 'select 1/0 in a transaction')
            if (c.rnd() < 0.5) {
              await mustFail(c, client.query(EVENTS_READ), sqlstate('25P02 transaction aborted', '25P02'), 'a statement after an error')
            }
            await client.query(c.pick(ROLLBACKS))
            c.report.clients.rollbacks++
          }
          await checkState(c, client, a, 'after a failed statement')
          await readEvents(c, client, a)
        }),
      )
    },
  },
  {
    kind: 'client session dirt',
    weight: 4,
    run: async (c: Context) => {
      const db = c.pick([c.tx, c.session])
      const a = c.actor(true)
      await db.runWithTenant(a.tenant, () =>
        withClient(c, db, async ({ client }) => {
          const rounds = 1 + Math.floor(c.rnd() * 3)
          for (let i = 0; i < rounds; i++) {
            const mess = dirt(c, a)
            c.report.clients.sessionDirt++
            if (c.rnd() < 0.5) {
              // Autocommit: the statement's own trip resets what it wrote.
              await client.query(mess.text, mess.values)
            } else {
              // In a caller transaction: COMMIT carries the reset; ROLLBACK undoes it anyway.
              // Between the dirt and the end the caller runs as what it wrote: nothing is read then.
              await begin(c, client, c.pick(WRITABLE_BEGINS))
              const written = c.rnd() < 0.5 ? await writeEvent(c, client, a) : undefined
              await client.query(mess.text, mess.values)
              const commit = c.rnd() < 0.7
              await client.query(commit ? c.pick(COMMITS) : c.pick(ROLLBACKS))
              if (written !== undefined) (commit ? c.committed : c.undone).add(written)
              if (commit) c.report.clients.commits++
              else c.report.clients.rollbacks++
            }
            // The next statements run as the bound tenant, and as nothing else.
            await checkState(c, client, a, `the statement after ${mess.text}`)
            await readEvents(c, client, a)
            if (c.rnd() < 0.3) c.committed.add(await writeEvent(c, client, a))
          }
        }),
      )
    },
  },
  {
    kind: 'client refused control',
    weight: 1.5,
    expect: isA('InvalidQueryError', InvalidQueryError),
    run: async (c: Context) => {
      const db = c.pick([c.tx, c.session])
      const a = c.actor(true)
      const text = c.pick(REFUSED_CONTROL)
      let refused: unknown
      await db.runWithTenant(a.tenant, () =>
        withClient(c, db, async ({ client }) => {
          const inTransaction = c.rnd() < 0.75
          let written: string | undefined
          if (inTransaction) {
            await begin(c, client, c.pick(WRITABLE_BEGINS))
            written = await writeEvent(c, client, a)
          }
          refused = await mustFail(c, client.query(text), isA('InvalidQueryError', InvalidQueryError), text)
          c.report.clients.refusedControl++
          // Nothing reached the server: the transaction (if any) is the same one, with its tenant.
          const state = await checkState(c, client, a, `after a refused ${text}`)
          if (inTransaction && !state.wrote) c.fault(`${text} was refused, yet the transaction that wrote is gone`)
          if (inTransaction) {
            await client.query('COMMIT')
            c.report.clients.commits++
            c.committed.add(written!)
          }
          await readEvents(c, client, a)
        }),
      )
      throw refused
    },
  },
  {
    kind: 'client used after release',
    weight: 1.5,
    expect: isA('ScopeClosedError', ScopeClosedError),
    run: async (c: Context) => {
      const db = c.pick([c.tx, c.session])
      const a = c.actor(true)
      await db.runWithTenant(a.tenant, async () => {
        const held = await connectClient(c, db)
        const { client } = held
        try {
          await readEvents(c, client, a)
          if (c.rnd() < 0.4) {
            // Issued before release(): it runs, then the client goes back.
            const inFlight = writeEvent(c, client, a)
            held.release()
            c.committed.add(await inFlight)
          }
        } finally {
          if (!held.released) held.release()
        }
        let again: unknown
        try {
          client.release()
        } catch (err) {
          again = err
        }
        if (!(again instanceof Error) || !/already been released/.test(again.message)) {
          c.fault(`a second release() of a client did not throw: ${String(again)}`)
        }
        // A query after release (a floating promise, a timer): refused, never sent.
        const query = () =>
          client.query("insert into events (kind, payload) values ('must-not-exist', 'after release')")
        await (c.rnd() < 0.5 ? query() : sleep(c.rnd() * 5).then(query))
      })
    },
  },
  {
    kind: 'client in withTenant',
    weight: 3,
    run: async (c: Context) => {
      const session = c.rnd() < 0.3
      const db = session ? c.session : c.tx
      const a = c.actor(true)
      const kept = await db.withTenant(a.tenant, async () => {
        const kept = [await writeEvent(c, db, a)]
        const client = (await db.pool.connect()) as unknown as HeldClient
        c.report.clients.inScope++
        if ((await pidOf(client)) !== (await pidOf(db))) c.fault('the client of a scope ran on another backend')
        // An ORM's transaction: a savepoint of the scope's (scope transaction), a real one (session).
        await client.query('BEGIN')
        await writeEvent(c, client, a, 'must-not-exist')
        await client.query('ROLLBACK')
        await client.query('BEGIN')
        kept.push(await writeEvent(c, client, a))
        await client.query('COMMIT')
        if (c.rnd() < 0.4) {
          // One that fails: the ORM rolls back, and the scope goes on.
          await client.query('BEGIN')
          await writeEvent(c, client, a, 'must-not-exist')
          await mustFail(c, client.query('select 1/0'), sqlstate('22012 division by zero', '22012'), 'select 1/0 in an ORM transaction')
          await client.query('ROLLBACK')
        }
        if (!session && c.rnd() < 0.3) {
          // Transaction modes cannot apply to a savepoint: refused, nothing sent.
          await mustFail(c, client.query('BEGIN ISOLATION LEVEL SERIALIZABLE'), isA('InvalidQueryError', InvalidQueryError), 'BEGIN ISOLATION LEVEL inside withTenant')
        }
        await checkState(c, client, a, 'the client of a scope')
        await readEvents(c, client, a)
        kept.push(await writeEvent(c, client, a))
        client.release()
        await mustFail(c, client.query('select 1'), isA('ScopeClosedError', ScopeClosedError), 'a query on a released scope client')
        // The scope itself goes on.
        await readEvents(c, db, a)
        return kept
      })
      for (const p of kept) c.committed.add(p)
    },
  },
  {
    kind: 'client withoutTenant',
    weight: 2,
    run: async (c: Context) => {
      const db = c.pick([c.tx, c.session])
      await db.withoutTenant(() =>
        withClient(c, db, async ({ client }) => {
          const check = (row: Record<string, unknown> | undefined, where: string) => {
            c.report.probes++
            if (row?.cu !== c.appRole || row.su !== c.appRole || row.tid !== '' || row.n !== 0) {
              c.report.dirtyProbes++
              c.fault(`a withoutTenant client (${where}) saw tenant state: ${JSON.stringify(row)}`)
            }
          }
          check((await client.query(PROBE_SQL)).rows[0], 'autocommit')
          if (c.rnd() < 0.5) {
            await client.query('BEGIN')
            check((await client.query(PROBE_SQL)).rows[0], 'in a transaction')
            await client.query('COMMIT')
          }
        }),
      )
    },
  },
  // Faults on held clients.
  {
    kind: 'client backend terminated',
    weight: 0.5,
    expect: { label: 'its connection lost', test: (e: unknown) => COLLATERAL.terminated.some((m) => m.test(e)) },
    run: async (c: Context) => {
      const db = c.pick([c.tx, c.session])
      const a = c.actor(true)
      const midTransaction = c.rnd() < 0.5
      const duringStatement = c.rnd() < 0.3
      await db.runWithTenant(a.tenant, () =>
        withClient(c, db, async (held) => {
          const { client } = held
          let heard!: () => void
          const errored = new Promise<void>((resolve) => {
            heard = resolve
          })
          const onError = () => heard()
          client.on('error', onError)
          try {
            const pid = await pidOf(client)
            if (midTransaction) {
              await begin(c, client, c.pick(WRITABLE_BEGINS))
              c.undone.add(await writeEvent(c, client, a))
            } else await readEvents(c, client, a)
            held.inject('pg_terminate_backend')
            c.report.clients.terminations++
            const kill = () => c.admin.query('select pg_terminate_backend($1)', [pid])
            if (duringStatement) {
              const running = client.query('select pg_sleep(2)')
              running.catch(() => undefined)
              await sleep(20)
              await kill()
              await running
              return
            }
            // Between statements: the client hears of it (its 'error' event, passed on to the
            // caller's listener), and the next statement fails.
            await kill()
            const heardOf = await Promise.race([errored.then(() => true), sleep(2_000).then(() => false)])
            if (!heardOf) c.report.clients.errorEventsMissed++
            await (midTransaction ? client.query(c.pick(COMMITS)) : readEvents(c, client, a))
          } finally {
            client.removeListener('error', onError)
          }
        }),
      )
    },
  },
  {
    kind: 'client query_timeout',
    weight: 0.7,
    expect: message('Query read timeout', /^Query read timeout$/),
    run: async (c: Context) => {
      const db = c.pick([c.tx, c.session])
      const a = c.actor(true)
      await db.runWithTenant(a.tenant, () =>
        withClient(c, db, async (held) => {
          const { client } = held
          if (c.rnd() < 0.5) {
            await begin(c, client, c.pick(WRITABLE_BEGINS))
            c.undone.add(await writeEvent(c, client, a))
          } else if (c.rnd() < 0.5) await readEvents(c, client, a)
          // Left unanswered: the client cannot be confirmed clean, so its release destroys it and
          // reports a ReleaseError, which this explains.
          held.inject('query_timeout')
          const timedOut = client.query({ text: 'select pg_sleep(0.3)', query_timeout: 20 })
          if (c.rnd() < 0.4) {
            // Swallowed: the next statement waits for the server, then runs, as the tenant.
            const err = await mustFail(c, timedOut, message('Query read timeout', /^Query read timeout$/), 'a statement past its query_timeout')
            await checkState(c, client, a, 'the statement after a query_timeout')
            await readEvents(c, client, a)
            throw err
          }
          await timedOut
        }),
      )
    },
  },
  {
    kind: 'client pool exhaustion',
    weight: 0.03,
    run: async (c: Context) => {
      // Clients held (idle, or idle in a caller transaction) for longer than connectionTimeoutMillis:
      // one more connect() than the pool has clients must time out waiting.
      const done = c.hogStarted()
      try {
        const hogs = Array.from({ length: POOL_SIZE + 1 }, () => {
          const a = c.actor(true)
          const db = c.pick([c.tx, c.session])
          const inTransaction = c.rnd() < 0.5
          return db.runWithTenant(a.tenant, () =>
            withClient(c, db, async ({ client }) => {
              let written: string | undefined
              if (inTransaction) {
                await begin(c, client, c.pick(WRITABLE_BEGINS))
                written = await writeEvent(c, client, a)
              } else await readEvents(c, client, a)
              await sleep(HOG_SLEEP_S * 1000)
              await checkState(c, client, a, 'a client held through a pool exhaustion')
              await readEvents(c, client, a)
              if (written !== undefined) {
                await client.query('COMMIT')
                c.report.clients.commits++
                c.committed.add(written)
              }
            }),
          )
        })
        const outcomes = await Promise.allSettled(hogs)
        for (const o of outcomes) {
          if (o.status === 'fulfilled') continue
          if (COLLATERAL.exhausted[0]!.test(o.reason)) c.report.hogTimeouts++
          else throw o.reason
        }
      } finally {
        done()
      }
    },
  },
] as const satisfies ReadonlyArray<{ kind: string; weight: number; expect?: Expectation; run(c: Context): Promise<void> }>

const POOL_SIZE = 3

/** A small seeded PRNG (mulberry32): the same seed gives the same mix of operations. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** The seed of operation `index`'s own generator. */
function opSeed(seed: number, index: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x27d4eb2d) + Math.imul(index + 1, 0x9e3779b9)) >>> 0
}

/** A seed for a run that was given none. */
export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 31)
}

/**
 * The seed in `text` (an environment variable or a command-line value), a random one when it is
 * empty; throws on anything that is not a non-negative integer.
 */
export function parseSeed(text: string | undefined): number {
  if (text === undefined || text.trim() === '') return randomSeed()
  const seed = Number(text)
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`not a seed: ${JSON.stringify(text)} (a non-negative integer)`)
  return seed
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code
    return `${err.name}${typeof code === 'string' ? ` ${code}` : ''}: ${err.message}`
  }
  return String(err)
}

/** Runs the torture. Never throws for an invariant: read `violations`. */
export async function runTorture(options: TortureOptions): Promise<TortureReport> {
  const seed = options.seed ?? randomSeed()
  const rnd = prng(seed)
  const tenantCount = options.tenants ?? 12
  const concurrency = options.concurrency ?? 16
  const deadlineMs = options.deadlineMs ?? 10_000
  const timeLimit = options.timeLimitMs ?? Number.POSITIVE_INFINITY
  const poolSize = options.poolSize ?? POOL_SIZE

  // Ids with a quote, a semicolon and non-ASCII characters among the plain ones.
  const ids = Array.from({ length: tenantCount }, (_, i) =>
    i === 1 ? `org_o'hara; --` : i === 2 ? 'org_ünï_東京' : `org_${i}`,
  )
  const report: TortureReport = {
    seed,
    operations: 0,
    stoppedBy: 'count',
    durationMs: 0,
    byKind: Object.fromEntries(OPS.map((o) => [o.kind, { ran: 0, ok: 0, injected: 0, collateral: 0 }])),
    failures: {},
    collateralByKind: {},
    terminations: 0,
    hogs: 0,
    hogTimeouts: 0,
    rowsRead: 0,
    foreignRowsRead: 0,
    rowsWritten: 0,
    foreignRowsWritten: 0,
    lostWrites: 0,
    undoneWritesFound: 0,
    probes: 0,
    dirtyProbes: 0,
    hangs: 0,
    unexpected: [],
    diagnosis: [],
    eventLoopMaxMs: 0,
    stats: { released: 0, destroyed: 0, destroyedBy: {} as TenantPoolStats['destroyedBy'], verified: 0, dirty: 0 },
    channels: {
      scopeStarts: 0,
      scopeEnds: 0,
      queries: 0,
      refusedQueries: 0,
      releases: 0,
      verifiedReleases: 0,
      destroys: 0,
      destroyedBy: {},
    },
    clients: {
      connects: 0,
      handedOut: 0,
      callerReleases: 0,
      releasedWithError: 0,
      inScope: 0,
      scopeStarts: 0,
      scopeEnds: 0,
      releases: 0,
      verifiedReleases: 0,
      destroys: 0,
      destroyedBy: {},
      releaseErrors: 0,
      releaseErrorsBy: {},
      sessionDirt: 0,
      refusedControl: 0,
      commits: 0,
      rollbacks: 0,
      serializationFailures: 0,
      terminations: 0,
      errorEventsMissed: 0,
    },
    scopeCheckouts: 0,
    poolCheckouts: 0,
    poolReturns: 0,
    leakedClients: 0,
    violations: [],
  }

  // Counted through the diagnostics channels, as a user would. Client scopes (db.pool.connect()
  // under runWithTenant / withoutTenant) are followed one by one: each client returned once.
  const ch = report.channels
  const cl = report.clients
  const clientLog: ClientLog = { scopes: new Map(), lastStart: undefined }
  // The client destroy just published: a ReleaseError, if any, follows it synchronously.
  let lastClientDestroy: { scopeId: number; reason: string; scope: ClientScope | undefined } | undefined
  const clientReturned = (m: ScopeMessage): ClientScope | undefined => {
    const scope = clientLog.scopes.get(m.scopeId)
    if (scope === undefined || scope.returned) {
      report.violations.push(`client scope ${m.scopeId} (${JSON.stringify(m.tenant)}) returned its client twice, or one it never took`)
      return scope
    }
    scope.returned = true
    if (scope.ended) report.violations.push(`client scope ${m.scopeId} returned its client after it ended`)
    return scope
  }
  const listeners: Array<[string, (m: unknown) => void]> = [
    [
      diagnosticsChannels.scopeStart,
      (m) => {
        ch.scopeStarts++
        const { kind, scopeId } = m as ScopeMessage
        if (kind !== 'client') return
        cl.scopeStarts++
        clientLog.lastStart = scopeId
        clientLog.scopes.set(scopeId, { startedAt: performance.now(), fault: undefined, returned: false, ended: false })
      },
    ],
    [
      diagnosticsChannels.scopeEnd,
      (m) => {
        ch.scopeEnds++
        const { kind, scopeId } = m as ScopeMessage
        if (kind !== 'client') return
        cl.scopeEnds++
        const scope = clientLog.scopes.get(scopeId)
        if (scope === undefined || scope.ended) {
          report.violations.push(`client scope ${scopeId} ended twice, or never started`)
          return
        }
        scope.ended = true
        // Kept while it may still return a client (or never took one: its checkout failed).
        if (scope.returned) clientLog.scopes.delete(scopeId)
      },
    ],
    [
      diagnosticsChannels.query,
      (m) => {
        ch.queries++
        if (!(m as QueryMessage).sent) ch.refusedQueries++
      },
    ],
    [
      diagnosticsChannels.release,
      (m) => {
        const message = m as ReleaseMessage
        ch.releases++
        if (message.verified) ch.verifiedReleases++
        if (message.kind !== 'client') return
        cl.releases++
        if (message.verified) cl.verifiedReleases++
        const scope = clientReturned(message)
        if (scope?.ended) clientLog.scopes.delete(message.scopeId)
      },
    ],
    [
      diagnosticsChannels.destroy,
      (m) => {
        const message = m as DestroyMessage
        const { reason, dirty } = message
        ch.destroys++
        ch.destroyedBy[reason] = (ch.destroyedBy[reason] ?? 0) + 1
        if (reason === 'dirty') report.violations.push(`the release canary found a dirty client: ${dirty?.problems.join('; ')}`)
        if (message.kind !== 'client') return
        cl.destroys++
        cl.destroyedBy[reason] = (cl.destroyedBy[reason] ?? 0) + 1
        const scope = clientReturned(message)
        lastClientDestroy = { scopeId: message.scopeId, reason, scope }
        if (scope?.ended) clientLog.scopes.delete(message.scopeId)
      },
    ],
  ]
  for (const [name, fn] of listeners) diagnostics.subscribe(name, fn)

  const raw = new pg.Pool({
    connectionString: options.appUrl,
    max: poolSize,
    connectionTimeoutMillis: CONNECTION_TIMEOUT_MS,
  })
  raw.on('error', () => undefined) // late errors of clients destroyed after a termination
  // Every checkout the pool made was given back, whoever made it.
  let acquires = 0
  let returns = 0
  raw.on('acquire', () => acquires++)
  raw.on('release', () => returns++)
  // The pool pg-tenant sees: the same pg.Pool, counting the clients it hands to pg-tenant. It keeps
  // pg's callback form, which pg-tenant uses to attach its 'error' listener in time.
  let scopeCheckouts = 0
  type Callback = (err: Error | undefined, client?: pg.PoolClient, done?: unknown) => void
  // An EventEmitter, as pg.Pool is: db.pool.on('error') lands here, and pg-tenant emits the
  // ReleaseErrors of db.pool.connect() clients on it.
  const counted = Object.assign(new EventEmitter(), {
    connect(callback?: Callback) {
      if (callback === undefined) {
        return raw.connect().then((client) => {
          scopeCheckouts++
          return client
        })
      }
      raw.connect((err, client, done) => {
        if (!err) scopeCheckouts++
        callback(err, client, done)
      })
      return undefined
    },
    end: () => raw.end(),
  }) as unknown as PgPoolLike
  const admin = new pg.Pool({ connectionString: options.adminUrl, max: 2 })
  admin.on('error', () => undefined)
  const appRole = decodeURIComponent(new URL(options.appUrl).username)
  const tx = createTenantPool(counted, { verifyRelease: true, roles: options.roles })
  const session = createTenantPool(counted, { verifyRelease: true, roles: options.roles, scope: 'session' })

  const terminations: number[] = []
  const hogWindows: Array<[number, number]> = []
  let sequence = 0
  // Each operation draws from a generator of its own, seeded from the run's seed and its index:
  // the same seed gives every operation the same kind and the same choices, however the
  // concurrent operations interleave (the timing of faults is still the machine's).
  const randomness = (r: () => number): Pick<Context, 'rnd' | 'pick' | 'actor' | 'roleActor'> => ({
    rnd: r,
    pick: (items) => items[Math.floor(r() * items.length)]!,
    actor(withRole = false) {
      const id = ids[Math.floor(r() * ids.length)]!
      if (withRole && r() < 0.25) {
        const role = options.roles[Math.floor(r() * options.roles.length)]!
        return { tenant: { id, role }, id, role }
      }
      return { tenant: id, id, role: undefined }
    },
    roleActor() {
      const role = options.roles[Math.floor(r() * options.roles.length)]!
      return { tenant: { role }, id: undefined, role }
    },
  })
  const c: Context = {
    tx,
    session,
    raw,
    admin,
    appRole,
    ids,
    roles: options.roles,
    report,
    committed: new Set(),
    committedClients: new Set(),
    undone: new Set(),
    clientLog,
    ...randomness(rnd),
    nextPayload: (actor) => `${actor.id ?? actor.role}|${seed}.${++sequence}`,
    fault(text) {
      report.violations.push(text)
      throw new Error(`invariant: ${text}`)
    },
    hogStarted() {
      report.hogs++
      const window: [number, number] = [performance.now(), Number.POSITIVE_INFINITY]
      hogWindows.push(window)
      return () => {
        window[1] = performance.now()
      }
    },
    terminating() {
      terminations.push(performance.now())
      return () => {
        report.terminations++
      }
    },
  }

  const collateralOf = (err: unknown, started: number, ended: number): string | undefined => {
    for (let i = terminations.length - 1; i >= 0; i--) {
      const at = terminations[i]!
      if (at > ended) continue
      if (at < started - TERMINATION_GRACE_MS) break
      const hit = COLLATERAL.terminated.find((m) => m.test(err))
      if (hit) return `collateral of pg_terminate_backend: ${hit.label}`
      break
    }
    const overlapping = hogWindows.some(([from, to]) => from <= ended && started <= to + HOG_GRACE_MS)
    if (overlapping && COLLATERAL.exhausted.some((m) => m.test(err))) return 'collateral of pool exhaustion: checkout timeout'
    return undefined
  }

  // A db.pool.connect() client that could not be confirmed clean on release is destroyed and
  // reported here. Each must come from a fault: one injected on that very client, or a backend
  // terminated around it.
  const terminatedSince = (since: number) => terminations.some((at) => at >= since - TERMINATION_GRACE_MS)
  const onPoolError = (err: unknown) => {
    const destroyed = lastClientDestroy
    lastClientDestroy = undefined
    if (!(err instanceof ReleaseError)) {
      report.violations.push(`the pool's 'error' event carried something else than a ReleaseError: ${describeError(err)}`)
      return
    }
    cl.releaseErrors++
    const count = (key: string) => {
      cl.releaseErrorsBy[key] = (cl.releaseErrorsBy[key] ?? 0) + 1
    }
    if (destroyed === undefined || destroyed.reason !== err.reason) {
      count(`unexplained: ${err.reason}`)
      report.violations.push(`a ReleaseError (${err.reason}) that no destroyed client of kind 'client' announced`)
      return
    }
    const scope = destroyed.scope
    if (scope?.fault !== undefined) count(`injected ${scope.fault}: ${err.reason}`)
    else if (scope !== undefined && terminatedSince(scope.startedAt)) count(`collateral of pg_terminate_backend: ${err.reason}`)
    else {
      count(`unexplained: ${err.reason}`)
      report.violations.push(
        `a ReleaseError (${err.reason}: ${describeError(err.cause)}) on client scope ${destroyed.scopeId} that no injected fault explains`,
      )
    }
  }
  ;(tx.pool as unknown as EventEmitter).on('error', onPoolError)

  const weightOf = (op: (typeof OPS)[number]) => options.weights?.[op.kind] ?? op.weight
  const totalWeight = OPS.reduce((sum, o) => sum + weightOf(o), 0)
  const chooseOp = () => {
    let x = rnd() * totalWeight
    for (const op of OPS) {
      x -= weightOf(op)
      if (x < 0) return op
    }
    return OPS[0]
  }

  const started = performance.now()
  let issued = 0
  const inFlight = new Set<Promise<unknown>>()
  const runningOps = new Map<number, { kind: string; since: number }>()
  let opIds = 0
  const loopDelay = monitorEventLoopDelay({ resolution: 20 })
  loopDelay.enable()
  const diagnose = (kind: string, since: number) => {
    if (report.diagnosis.length >= 5) return
    const now = performance.now()
    const others = [...runningOps.values()]
      .map((r) => `${r.kind} ${Math.round(now - r.since)} ms`)
      .join(', ')
    report.diagnosis.push(
      `${kind} (${Math.round(now - since)} ms) at ${((now - started) / 1000).toFixed(1)} s: pool total ` +
        `${raw.totalCount} idle ${raw.idleCount} waiting ${raw.waitingCount}; event loop max ` +
        `${(loopDelay.max / 1e6).toFixed(0)} ms; running: ${others}`,
    )
  }
  const runOne = async (op: (typeof OPS)[number], index: number) => {
    const stats = report.byKind[op.kind]!
    stats.ran++
    const opStarted = performance.now()
    const id = ++opIds
    runningOps.set(id, { kind: op.kind, since: opStarted })
    const oc: Context = { ...c, ...randomness(prng(opSeed(seed, index))) }
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<'hang'>((resolve) => {
      timer = setTimeout(() => resolve('hang'), deadlineMs)
    })
    const running = op.run(oc).then(
      () => ({ ok: true as const }),
      (error: unknown) => ({ ok: false as const, error }),
    )
    inFlight.add(running)
    const outcome = await Promise.race([running, deadline])
    clearTimeout(timer)
    runningOps.delete(id)
    if (outcome === 'hang') {
      report.hangs++
      report.violations.push(`${op.kind} (operation #${index}) did not settle within ${deadlineMs} ms`)
      void running.finally(() => inFlight.delete(running))
      return
    }
    inFlight.delete(running)
    const expected = 'expect' in op ? (op.expect as Expectation) : undefined
    if (outcome.ok) {
      if (expected !== undefined && op.kind !== 'pool exhaustion') {
        report.unexpected.push({ op: op.kind, index, error: `succeeded; expected ${expected.label}` })
        report.violations.push(`${op.kind} (operation #${index}) succeeded although it injected ${expected.label}`)
      } else stats.ok++
      return
    }
    const error = outcome.error
    if (error instanceof Error && error.message.startsWith('invariant: ')) return // already recorded
    if (expected?.test(error)) {
      stats.injected++
      const key = `${op.kind}: ${expected.label}`
      report.failures[key] = (report.failures[key] ?? 0) + 1
      return
    }
    const collateral = collateralOf(error, opStarted, performance.now())
    if (collateral !== undefined) {
      stats.collateral++
      report.failures[collateral] = (report.failures[collateral] ?? 0) + 1
      const byKind = (report.collateralByKind[op.kind] ??= {})
      byKind[collateral] = (byKind[collateral] ?? 0) + 1
      return
    }
    diagnose(op.kind, opStarted)
    report.unexpected.push({ op: op.kind, index, error: describeError(error) })
    report.violations.push(`${op.kind} (operation #${index}) failed with an error no injected fault explains: ${describeError(error)}`)
  }

  const worker = async () => {
    while (issued < options.operations) {
      if (performance.now() - started > timeLimit) {
        report.stoppedBy = 'time'
        return
      }
      // Every kind of operation runs at least once, first; then at random by weight.
      const index = issued++
      const op = index < OPS.length ? OPS[index]! : chooseOp()
      await runOne(op, index)
      report.operations++
      if (options.onProgress && report.operations % (options.progressEvery ?? 100_000) === 0) {
        report.durationMs = performance.now() - started
        report.stats = sumStats(tx.stats(), session.stats())
        options.onProgress(report)
      }
    }
  }
  try {
    await admin.query(
      `create or replace function ${LEAVE_TENANT}(v text) returns text language sql as $$ select set_config('app.tenant_id', v, false) $$`,
    )
    await Promise.all(Array.from({ length: concurrency }, worker))
    report.durationMs = performance.now() - started
    // Operations that overran their deadline get a little longer to settle before the counts.
    await Promise.race([Promise.allSettled([...inFlight]), sleep(deadlineMs)])
    await sleep(50) // let pg-pool finish removing destroyed clients
    report.leakedClients = raw.totalCount - raw.idleCount + raw.waitingCount
    report.stats = sumStats(tx.stats(), session.stats())
    report.scopeCheckouts = scopeCheckouts
    report.poolCheckouts = acquires
    report.poolReturns = returns
    // What is left: client scopes whose checkout failed (ended, no client), and nothing else.
    for (const [scopeId, scope] of clientLog.scopes) {
      if (!scope.ended) report.violations.push(`client scope ${scopeId} never ended`)
      else if (scope.returned) report.violations.push(`torture bug: client scope ${scopeId} kept after its end`)
    }
    await finalChecks(c, options)
    checkInvariants(report)
  } finally {
    loopDelay.disable()
    report.eventLoopMaxMs = loopDelay.max / 1e6
    for (const [name, fn] of listeners) diagnostics.unsubscribe(name, fn)
    ;(tx.pool as unknown as EventEmitter).off('error', onPoolError)
    await raw.end().catch(() => undefined)
    await admin.end().catch(() => undefined)
  }
  return report
}

function sumStats(a: TenantPoolStats, b: TenantPoolStats): TenantPoolStats {
  const destroyedBy = { ...a.destroyedBy }
  for (const [k, v] of Object.entries(b.destroyedBy)) {
    destroyedBy[k as keyof typeof destroyedBy] = (destroyedBy[k as keyof typeof destroyedBy] ?? 0) + v
  }
  return {
    released: a.released + b.released,
    destroyed: a.destroyed + b.destroyed,
    destroyedBy,
    verified: a.verified + b.verified,
    dirty: a.dirty + b.dirty,
  }
}

/** As superuser, over every row: tenants as meant, committed writes present, undone ones absent. */
async function finalChecks(c: Context, options: TortureOptions): Promise<void> {
  const admin = new pg.Client({ connectionString: options.adminUrl })
  await admin.connect()
  try {
    const events = await admin.query<{ org_id: string; payload: string }>(
      `select org_id, payload from events where kind = 'torture'`,
    )
    const present = new Set<string>()
    for (const row of events.rows) {
      present.add(row.payload)
      if (!row.payload.startsWith(`${row.org_id}|`)) {
        c.report.foreignRowsWritten++
        c.report.violations.push(`a row of ${row.org_id} carries ${row.payload}`)
      }
    }
    const clients = await admin.query<{ name: string; salesperson: string }>('select name, salesperson from clients')
    for (const row of clients.rows) {
      present.add(row.name)
      if (!row.name.startsWith(`${row.salesperson}|`)) {
        c.report.foreignRowsWritten++
        c.report.violations.push(`a client of ${row.salesperson} carries ${row.name}`)
      }
    }
    for (const payload of [...c.committed, ...c.committedClients]) {
      if (!present.has(payload)) {
        c.report.lostWrites++
        if (c.report.lostWrites <= 5) c.report.violations.push(`a committed write is missing: ${payload}`)
      }
    }
    const undone = await admin.query<{ n: number }>(
      `select count(*)::int as n from events where kind = 'must-not-exist'`,
    )
    c.report.undoneWritesFound = undone.rows[0]!.n
    // Writes of rolled-back caller transactions (of kind 'torture', so that the tenant's reads
    // saw them while the transaction ran).
    let rolledBackFound = 0
    for (const payload of c.undone) {
      if (!present.has(payload)) continue
      rolledBackFound++
      if (rolledBackFound <= 5) c.report.violations.push(`a write of a rolled-back transaction persisted: ${payload}`)
      if (c.committed.has(payload)) c.report.violations.push(`torture bug: ${payload} both committed and rolled back`)
    }
    c.report.undoneWritesFound += rolledBackFound
  } finally {
    await admin.end()
  }
}

function checkInvariants(r: TortureReport): void {
  const v = r.violations
  if (r.foreignRowsRead > 0) v.push(`${r.foreignRowsRead} rows of another tenant read`)
  if (r.undoneWritesFound > 0) v.push(`${r.undoneWritesFound} writes of failed scopes or floating queries persisted`)
  if (r.lostWrites > 0) v.push(`${r.lostWrites} committed writes lost`)
  if (r.stats.dirty > 0) v.push(`db.stats() counted ${r.stats.dirty} dirty clients`)
  if (r.stats.verified !== r.stats.released + r.stats.destroyedBy.dirty + r.stats.destroyedBy['check-failed']) {
    v.push(`not every client judged clean was checked: ${JSON.stringify(r.stats)}`)
  }
  const ch = r.channels
  if (ch.scopeStarts !== ch.scopeEnds) v.push(`${ch.scopeStarts} scopes started but ${ch.scopeEnds} ended`)
  if (ch.releases !== r.stats.released || ch.destroys !== r.stats.destroyed) {
    v.push(`channels (${ch.releases} released, ${ch.destroys} destroyed) disagree with db.stats()`)
  }
  if (ch.releases + ch.destroys !== r.scopeCheckouts) {
    v.push(`${r.scopeCheckouts} checkouts by scopes, but ${ch.releases + ch.destroys} releases and destroys`)
  }
  if (r.poolCheckouts !== r.poolReturns) {
    v.push(`the pg pool handed out ${r.poolCheckouts} clients but got ${r.poolReturns} back`)
  }
  if (r.leakedClients !== 0) v.push(`${r.leakedClients} clients still checked out (or waiting) at the end`)
  // db.pool.connect() clients: every one handed out was given back by the caller once, and
  // returned to the pool (or destroyed) by pg-tenant once; every release(err) destroyed its
  // connection; every destroy that was not a broken socket or the caller's request was reported.
  const cl = r.clients
  if (cl.scopeStarts !== cl.scopeEnds) v.push(`${cl.scopeStarts} client scopes started but ${cl.scopeEnds} ended`)
  if (cl.callerReleases !== cl.handedOut) v.push(`${cl.handedOut} clients handed out but ${cl.callerReleases} released by the torture`)
  if (cl.releases + cl.destroys !== cl.handedOut) {
    v.push(`${cl.handedOut} clients handed out, but ${cl.releases} released and ${cl.destroys} destroyed (kind 'client')`)
  }
  if ((cl.destroyedBy.requested ?? 0) !== cl.releasedWithError || (r.stats.destroyedBy.requested ?? 0) !== cl.releasedWithError) {
    v.push(
      `${cl.releasedWithError} clients released with an error, but ${cl.destroyedBy.requested ?? 0} destroyed as requested ` +
        `(db.stats(): ${r.stats.destroyedBy.requested ?? 0})`,
    )
  }
  const reportable = cl.destroys - (cl.destroyedBy.broken ?? 0) - (cl.destroyedBy.requested ?? 0)
  if (cl.releaseErrors !== reportable) {
    v.push(`${reportable} client destroys should have been reported, but the pool emitted ${cl.releaseErrors} ReleaseErrors`)
  }
  if (cl.verifiedReleases !== cl.releases) v.push(`${cl.releases - cl.verifiedReleases} client releases were not verified`)
  if (cl.errorEventsMissed > 0) {
    v.push(`${cl.errorEventsMissed} held clients lost their backend but never passed the 'error' event on to the caller's listener`)
  }
}

/** The report as text, for the soak and for a failing test. */
export function formatReport(r: TortureReport): string {
  const lines = [
    `pg-tenant torture: ${r.operations.toLocaleString('en')} operations in ${(r.durationMs / 1000).toFixed(1)} s ` +
      `(stopped by ${r.stoppedBy}), seed ${r.seed}`,
    '',
    'operation                          ran        ok  injected collateral',
  ]
  for (const [kind, s] of Object.entries(r.byKind)) {
    lines.push(
      `${kind.padEnd(30)} ${String(s.ran).padStart(8)} ${String(s.ok).padStart(9)} ${String(s.injected).padStart(9)} ${String(s.collateral).padStart(10)}`,
    )
  }
  lines.push('', 'failures, by the fault that explains them:')
  for (const [k, n] of Object.entries(r.failures).sort((a, b) => b[1] - a[1])) lines.push(`  ${String(n).padStart(8)}  ${k}`)
  lines.push('', 'collateral failures, by operation:')
  for (const [kind, by] of Object.entries(r.collateralByKind)) {
    const what = Object.entries(by)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${n} ${k.replace(/^collateral of /, '')}`)
      .join(', ')
    lines.push(`  ${kind}: ${what}`)
  }
  lines.push(
    '',
    `faults: ${r.terminations} backends terminated, ${r.hogs} pool exhaustions (${r.hogTimeouts} checkout timeouts among their own scopes)`,
    `rows read ${r.rowsRead}, of another tenant ${r.foreignRowsRead}; rows written ${r.rowsWritten}, for another tenant ${r.foreignRowsWritten}`,
    `committed writes lost ${r.lostWrites}; writes of failed scopes found ${r.undoneWritesFound}`,
    `probes of idle clients ${r.probes}, dirty ${r.dirtyProbes}; hangs ${r.hangs}; unexpected failures ${r.unexpected.length}`,
    `longest event-loop stall ${r.eventLoopMaxMs.toFixed(0)} ms`,
    `db.stats(): released ${r.stats.released}, destroyed ${r.stats.destroyed} ${JSON.stringify(r.stats.destroyedBy)}, ` +
      `verified ${r.stats.verified}, dirty ${r.stats.dirty}`,
    `channels: ${r.channels.scopeStarts} scopes started, ${r.channels.scopeEnds} ended, ${r.channels.queries} queries ` +
      `(${r.channels.refusedQueries} refused unsent), ${r.channels.releases} releases (${r.channels.verifiedReleases} verified), ` +
      `${r.channels.destroys} destroys ${JSON.stringify(r.channels.destroyedBy)}`,
    `clients handed to pg-tenant ${r.scopeCheckouts}; pg pool checkouts ${r.poolCheckouts}, returns ${r.poolReturns}; ` +
      `clients left checked out ${r.leakedClients}`,
    `db.pool.connect() clients: ${r.clients.connects} connects, ${r.clients.handedOut} handed out, ` +
      `${r.clients.callerReleases} released by the caller (${r.clients.releasedWithError} with an error), ` +
      `${r.clients.inScope} more inside withTenant (the scope's client)`,
    `  kind 'client' on the channels: ${r.clients.scopeStarts} scopes started, ${r.clients.scopeEnds} ended, ` +
      `${r.clients.releases} releases (${r.clients.verifiedReleases} verified), ${r.clients.destroys} destroys ${JSON.stringify(r.clients.destroyedBy)}`,
    `  ReleaseErrors on the pool's 'error' event ${r.clients.releaseErrors} ${JSON.stringify(r.clients.releaseErrorsBy)}`,
    `  caller transactions committed ${r.clients.commits}, rolled back ${r.clients.rollbacks} ` +
      `(${r.clients.serializationFailures} after a serialization failure); session dirt written ${r.clients.sessionDirt}; ` +
      `transaction control refused ${r.clients.refusedControl}; held backends terminated ${r.clients.terminations} ` +
      `('error' event not heard ${r.clients.errorEventsMissed})`,
    '',
    r.violations.length === 0 ? 'every invariant held' : `VIOLATIONS (${r.violations.length}):`,
    ...r.violations.slice(0, 20).map((x) => `  - ${x}`),
    ...r.unexpected.slice(0, 10).map((u) => `  unexpected in ${u.op} (operation #${u.index}): ${u.error}`),
    ...r.diagnosis.map((d) => `  when: ${d}`),
  )
  return lines.join('\n')
}
