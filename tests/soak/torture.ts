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
 */
import diagnostics from 'node:diagnostics_channel'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import pg from 'pg'
import {
  createTenantPool,
  diagnosticsChannels,
  ScopeClosedError,
  TenantMismatchError,
  TenantRequiredError,
  TransactionAbortedError,
  type DestroyMessage,
  type QueryMessage,
  type ReleaseMessage,
  type PgPoolLike,
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
  readonly report: TortureReport
  readonly committed: Set<string>
  readonly committedClients: Set<string>
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

async function readEvents(c: Context, db: TenantPool, actor: Actor): Promise<void> {
  const { rows } = await db.query<{ org_id: string; payload: string }>(EVENTS_READ)
  c.report.rowsRead += rows.length
  for (const row of rows) {
    if (row.org_id !== actor.id || !row.payload.startsWith(`${actor.id}|`)) {
      c.report.foreignRowsRead++
      c.fault(`read a foreign row as ${JSON.stringify(actor.tenant)}: ${JSON.stringify(row)}`)
    }
  }
}

async function writeEvent(c: Context, db: TenantPool, actor: Actor, kind = 'torture'): Promise<string> {
  const payload = c.nextPayload(actor)
  const { rows } = await db.query<{ org_id: string }>(
    'insert into events (kind, payload) values ($1, $2) returning org_id',
    [kind, payload],
  )
  c.report.rowsWritten++
  if (rows[0]?.org_id !== actor.id) c.fault(`wrote a row for ${rows[0]?.org_id} as ${actor.id}`)
  return payload
}

async function readClients(c: Context, db: TenantPool, actor: Actor): Promise<void> {
  const { rows } = await db.query<{ name: string; salesperson: string }>(CLIENTS_READ)
  c.report.rowsRead += rows.length
  for (const row of rows) {
    if (row.salesperson !== actor.role || !row.name.startsWith(`${actor.role}|`)) {
      c.report.foreignRowsRead++
      c.fault(`read a foreign client as ${actor.role}: ${JSON.stringify(row)}`)
    }
  }
}

async function writeClient(c: Context, db: TenantPool, actor: Actor): Promise<string> {
  const name = `${actor.role}|${c.nextPayload(actor)}`
  const { rows } = await db.query<{ salesperson: string }>(
    'insert into clients (name) values ($1) returning salesperson',
    [name],
  )
  c.report.rowsWritten++
  if (rows[0]?.salesperson !== actor.role) c.fault(`wrote a client for ${rows[0]?.salesperson} as ${actor.role}`)
  return name
}

const pidOf = async (db: TenantPool) => (await db.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid

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
      // handed over (see src/checkout.ts: `await pool.connect()` leaves a window).
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
    scopeCheckouts: 0,
    poolCheckouts: 0,
    poolReturns: 0,
    leakedClients: 0,
    violations: [],
  }

  // Counted through the diagnostics channels, as a user would.
  const ch = report.channels
  const listeners: Array<[string, (m: unknown) => void]> = [
    [diagnosticsChannels.scopeStart, () => ch.scopeStarts++],
    [diagnosticsChannels.scopeEnd, () => ch.scopeEnds++],
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
        ch.releases++
        if ((m as ReleaseMessage).verified) ch.verifiedReleases++
      },
    ],
    [
      diagnosticsChannels.destroy,
      (m) => {
        const { reason, dirty } = m as DestroyMessage
        ch.destroys++
        ch.destroyedBy[reason] = (ch.destroyedBy[reason] ?? 0) + 1
        if (reason === 'dirty') report.violations.push(`the release canary found a dirty client: ${dirty?.problems.join('; ')}`)
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
  const counted = {
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
  } as unknown as PgPoolLike
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
    report,
    committed: new Set(),
    committedClients: new Set(),
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
    await finalChecks(c, options)
    checkInvariants(report)
  } finally {
    loopDelay.disable()
    report.eventLoopMaxMs = loopDelay.max / 1e6
    for (const [name, fn] of listeners) diagnostics.unsubscribe(name, fn)
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
}

/** The report as text, for the soak and for a failing test. */
export function formatReport(r: TortureReport): string {
  const lines = [
    `pg-tenant torture: ${r.operations.toLocaleString('en')} operations in ${(r.durationMs / 1000).toFixed(1)} s ` +
      `(stopped by ${r.stoppedBy}), seed ${r.seed}`,
    '',
    'operation                      ran        ok  injected collateral',
  ]
  for (const [kind, s] of Object.entries(r.byKind)) {
    lines.push(
      `${kind.padEnd(26)} ${String(s.ran).padStart(8)} ${String(s.ok).padStart(9)} ${String(s.injected).padStart(9)} ${String(s.collateral).padStart(10)}`,
    )
  }
  lines.push('', 'failures, by the fault that explains them:')
  for (const [k, n] of Object.entries(r.failures).sort((a, b) => b[1] - a[1])) lines.push(`  ${String(n).padStart(8)}  ${k}`)
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
    '',
    r.violations.length === 0 ? 'every invariant held' : `VIOLATIONS (${r.violations.length}):`,
    ...r.violations.slice(0, 20).map((x) => `  - ${x}`),
    ...r.unexpected.slice(0, 10).map((u) => `  unexpected in ${u.op} (operation #${u.index}): ${u.error}`),
    ...r.diagnosis.map((d) => `  when: ${d}`),
  )
  return lines.join('\n')
}
