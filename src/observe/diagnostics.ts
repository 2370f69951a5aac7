/**
 * Observability without a dependency: scope start and end, statements, and what became of each
 * client (released or destroyed) are published on `node:diagnostics_channel` channels, and each
 * TenantPool counts releases, destructions and release-canary results (`db.stats()`).
 *
 * A message is built and published only when its channel has subscribers: with none, the cost is
 * one property read per event. Channel names are process-global in Node, so the ESM and CJS builds
 * of pg-tenant (or two copies of it) publish on the same channels.
 */
import diagnostics from 'node:diagnostics_channel'
import { performance } from 'node:perf_hooks'
import {
  releaseCheck,
  settingsToCheck,
  type DestroyReason,
  type DirtyClient,
  type ReleaseVerdict,
} from './canary.js'
import type { QueryConfigLike } from '../driver/index.js'
import type { ScopeKind } from '../scope/kinds.js'
import type { ResolvedTenant, Tenant } from '../tenant.js'

/**
 * The names of pg-tenant's `node:diagnostics_channel` channels. Subscribe with
 * `diagnostics.subscribe(name, fn)`; each message type is documented on its interface.
 *
 * | channel | message | when |
 * |---|---|---|
 * | `pg-tenant:scope:start` | {@link ScopeStartMessage} | a scope was created (`withTenant`, `transaction` outside a scope, one `db.query` under `runWithTenant` or `withoutTenant`) |
 * | `pg-tenant:scope:end` | {@link ScopeEndMessage} | the scope ended and its client (if any) was released or destroyed |
 * | `pg-tenant:query` | {@link QueryMessage} | a statement sent through a scope settled (or was refused) |
 * | `pg-tenant:release` | {@link ReleaseMessage} | a client went back to the pool |
 * | `pg-tenant:destroy` | {@link DestroyMessage} | a client was destroyed instead (`release(true)`) |
 *
 * @example
 * ```ts
 * import diagnostics from 'node:diagnostics_channel'
 * import { diagnosticsChannels, type QueryMessage } from 'pg-tenant'
 *
 * diagnostics.subscribe(diagnosticsChannels.query, (message) => {
 *   const { tenant, pid, text, durationMs, outcome } = message as QueryMessage
 *   console.log(`${String(tenant)} pid=${pid} ${outcome} ${durationMs.toFixed(1)} ms ${text}`)
 * })
 * ```
 */
export const diagnosticsChannels = {
  scopeStart: 'pg-tenant:scope:start',
  scopeEnd: 'pg-tenant:scope:end',
  query: 'pg-tenant:query',
  release: 'pg-tenant:release',
  destroy: 'pg-tenant:destroy',
} as const

/**
 * How a scope runs: `'transaction'` and `'session'` as in the pool's `scope` option, `'single'`
 * for one `db.query` under `runWithTenant` or `withoutTenant` (its own implicit transaction),
 * `'client'` for a `db.pool.connect()` client under `runWithTenant` or `withoutTenant`.
 *
 * @example
 * ```ts
 * diagnostics.subscribe('pg-tenant:scope:start', (m) => {
 *   const kind: TracedScopeKind = (m as ScopeStartMessage).kind // 'transaction' | 'session' | 'single'
 * })
 * ```
 */
export type TracedScopeKind = 'transaction' | 'session' | 'single' | 'client'

/**
 * What every message says about its scope.
 *
 * @example
 * ```ts
 * diagnostics.subscribe('pg-tenant:scope:start', (m) => console.log((m as ScopeMessage).scopeId))
 * ```
 */
export interface ScopeMessage {
  /** A number unique in the process: the same in every message about one scope. */
  readonly scopeId: number
  /** The tenant as it was passed in; `undefined` under `withoutTenant`. */
  readonly tenant: Tenant | undefined
  readonly kind: TracedScopeKind
}

/**
 * Published on `pg-tenant:scope:start` when a scope is created (before it takes a client: a scope
 * takes one on its first statement, or never).
 *
 * @example
 * ```ts
 * diagnostics.subscribe('pg-tenant:scope:start', (m) => {
 *   const { scopeId, tenant, kind } = m as ScopeStartMessage
 * })
 * ```
 */
export interface ScopeStartMessage extends ScopeMessage {}

/**
 * Published on `pg-tenant:scope:end` when a scope has ended: its transaction committed or rolled
 * back (or its session state reset), and its client released or destroyed.
 *
 * @example
 * ```ts
 * diagnostics.subscribe('pg-tenant:scope:end', (m) => {
 *   const { tenant, durationMs, outcome, error } = m as ScopeEndMessage
 *   if (outcome === 'error') console.warn(`scope of ${String(tenant)} failed after ${durationMs} ms`, error)
 * })
 * ```
 */
export interface ScopeEndMessage extends ScopeMessage {
  /** The backend pid of the scope's client (`client.processID`); `undefined` if it took none. */
  readonly pid: number | undefined
  /** Milliseconds from the scope's creation to its end. */
  readonly durationMs: number
  /** `'ok'`: the callback succeeded and so did the end. `'error'`: either failed. */
  readonly outcome: 'ok' | 'error'
  /** What the caller received: the callback's error, or the end's (a failed COMMIT, say). */
  readonly error?: unknown
}

/**
 * Published on `pg-tenant:query` when a statement sent through a scope settles: `db.query` (text or
 * config; not pg submittables), and the `BEGIN` / `SAVEPOINT` / `RELEASE` / `COMMIT` of
 * `db.transaction`. A statement refused without being sent (`ScopeClosedError` from a floating
 * promise, say) is published too, with `sent: false`. The statements pg-tenant sends on its own to
 * end a scope are not: their outcome is in the scope's end and in release or destroy.
 *
 * @example
 * ```ts
 * diagnostics.subscribe('pg-tenant:query', (m) => {
 *   const { text, durationMs, outcome, rowCount } = m as QueryMessage
 * })
 * ```
 */
export interface QueryMessage extends ScopeMessage {
  readonly pid: number | undefined
  /** The statement's SQL text (never its values). */
  readonly text: string
  readonly durationMs: number
  readonly outcome: 'ok' | 'error'
  /** False when pg-tenant refused the statement before sending it. */
  readonly sent: boolean
  /** The result's `rowCount`, when it succeeded. */
  readonly rowCount?: number | null
  /** The error the caller received, when it failed. */
  readonly error?: unknown
}

/**
 * Published on `pg-tenant:release` when a client goes back to the pool.
 *
 * @example
 * ```ts
 * diagnostics.subscribe('pg-tenant:release', (m) => {
 *   const { pid, verified } = m as ReleaseMessage
 * })
 * ```
 */
export interface ReleaseMessage extends ScopeMessage {
  readonly pid: number | undefined
  /** True when the release canary (`verifyRelease`) checked this client and found it clean. */
  readonly verified: boolean
}

/**
 * Published on `pg-tenant:destroy` when a client is destroyed (`release(true)`) because its state
 * could not be confirmed clean, or the release canary found it dirty.
 *
 * @example
 * ```ts
 * diagnostics.subscribe('pg-tenant:destroy', (m) => {
 *   const { reason, dirty, pid } = m as DestroyMessage
 *   if (reason === 'dirty') alert(`pg-tenant caught tenant state on backend ${pid}: ${dirty?.problems}`)
 * })
 * ```
 */
export interface DestroyMessage extends ScopeMessage {
  readonly pid: number | undefined
  readonly reason: DestroyReason
  /** What the release canary found, when `reason` is `'dirty'`. */
  readonly dirty?: DirtyClient
  /** The canary's own failure, when `reason` is `'check-failed'`. */
  readonly error?: unknown
}

/**
 * A TenantPool's counters since it was created, from `db.stats()`. Every client a scope took is
 * counted once, in `released` or in `destroyed`.
 *
 * @example
 * ```ts
 * const db = createTenantPool(pool, { verifyRelease: 0.01 })
 * setInterval(() => {
 *   const { released, destroyed, verified, dirty } = db.stats()
 *   if (dirty > 0) console.error(`pg-tenant: ${dirty} dirty clients caught and destroyed`)
 * }, 60_000)
 * ```
 */
export interface TenantPoolStats {
  /** Clients given back to the pool with `release()`. */
  readonly released: number
  /** Clients destroyed with `release(true)`, for any reason (dirty ones included). */
  readonly destroyed: number
  /** Destroyed clients by reason. */
  readonly destroyedBy: Readonly<Record<DestroyReason, number>>
  /** Release canary checks run (`verifyRelease`), whatever their result. */
  readonly verified: number
  /** Clients the release canary found dirty (each is also in `destroyed`). Should stay 0. */
  readonly dirty: number
  /** The per-tenant quota's state, when the pool has one (`maxPerTenant`); absent otherwise. */
  readonly quota?: TenantQuotaStats
}

/**
 * `db.stats().quota`: what the per-tenant quota (`maxPerTenant`) holds back right now.
 *
 * @example
 * ```ts
 * const db = createTenantPool(pool, { maxPerTenant: 2 })
 * const quota: TenantQuotaStats | undefined = db.stats().quota
 * for (const { tenant, held, waiting } of quota?.busiest ?? []) console.log(tenant, held, waiting)
 * ```
 */
export interface TenantQuotaStats {
  /** The quota: the most connections one tenant may hold at once. */
  readonly maxPerTenant: number
  /**
   * Slots of the quota held now, all tenants together: a connection held, or being taken from the
   * pool (an operation that passed its tenant's quota and waits in the pool's own queue).
   */
  readonly held: number
  /** Operations waiting now for their tenant's quota, all tenants together. */
  readonly waiting: number
  /** Operations refused with `TenantQuotaError` since the pool was created. */
  readonly refused: number
  /** Up to 10 tenants with the most connections held and operations waiting, busiest first. */
  readonly busiest: readonly TenantUsage[]
}

/**
 * One tenant's use of its quota, in {@link TenantQuotaStats}.
 *
 * @example
 * ```ts
 * const usage: TenantUsage = { tenant: { id: 'org_42', role: 'reader' }, held: 2, waiting: 5 }
 * ```
 */
export interface TenantUsage {
  /**
   * The tenant as the quota counts it: its id (a string) when it has no role, `{ id?, role }`
   * when it has one, `{ settings }` when it has neither, `undefined` for `withoutTenant` work.
   */
  readonly tenant: Tenant | undefined
  /** Connections it holds now (or is taking from the pool). */
  readonly held: number
  /** Its operations waiting now for a connection of its quota. */
  readonly waiting: number
}

const channels = {
  scopeStart: diagnostics.channel(diagnosticsChannels.scopeStart),
  scopeEnd: diagnostics.channel(diagnosticsChannels.scopeEnd),
  query: diagnostics.channel(diagnosticsChannels.query),
  release: diagnostics.channel(diagnosticsChannels.release),
  destroy: diagnostics.channel(diagnosticsChannels.destroy),
}

// Scope ids stay unique across copies of the package (ESM and CJS builds) in one process.
const COUNTER_KEY = Symbol.for('pg-tenant.scope-id.v1')
type GlobalWithCounter = typeof globalThis & { [COUNTER_KEY]?: { next: number } }
const counter = ((globalThis as GlobalWithCounter)[COUNTER_KEY] ??= { next: 0 })

const REASONS: readonly DestroyReason[] = ['broken', 'unanswered', 'not-idle', 'unconfirmed', 'dirty', 'check-failed', 'requested']

/** What one TenantPool counts and how it checks releases. One per pool, shared by its scopes. */
export class PoolMonitor {
  /** The release canary's sample rate, 0 to 1. */
  readonly verifyRate: number
  /** The pool's tenant setting, always read by the canary. */
  readonly setting: string | undefined
  #released = 0
  #destroyed = 0
  #verified = 0
  #dirty = 0
  readonly #by: Record<DestroyReason, number> = Object.fromEntries(REASONS.map((r) => [r, 0])) as Record<
    DestroyReason,
    number
  >

  constructor(verifyRate: number, setting: string | undefined) {
    this.verifyRate = verifyRate
    this.setting = setting
  }

  /** Whether the next release is checked: always at rate 1, never at 0, else at random. */
  sample(): boolean {
    return this.verifyRate >= 1 || (this.verifyRate > 0 && Math.random() < this.verifyRate)
  }

  count(verdict: ReleaseVerdict, checked: boolean): void {
    if (checked) this.#verified++
    if (verdict.release) {
      this.#released++
      return
    }
    this.#destroyed++
    this.#by[verdict.reason]++
    if (verdict.reason === 'dirty') this.#dirty++
  }

  stats(): TenantPoolStats {
    return {
      released: this.#released,
      destroyed: this.#destroyed,
      destroyedBy: { ...this.#by },
      verified: this.#verified,
      dirty: this.#dirty,
    }
  }
}

/** Publishes a statement's outcome: its error, or its result. */
export type QuerySettled = (failed: boolean, outcome: unknown) => void

/** One scope's view of the monitor: its id, its client's pid, and the messages it publishes. */
export class ScopeTrace {
  readonly scopeId: number
  readonly #monitor: PoolMonitor | undefined
  readonly #tenant: ResolvedTenant
  readonly #kind: ScopeKind
  readonly #startedAt = performance.now()
  /** The backend pid of the scope's client, once it has one. */
  pid: number | undefined

  constructor(monitor: PoolMonitor | undefined, tenant: ResolvedTenant, kind: ScopeKind) {
    this.scopeId = ++counter.next
    this.#monitor = monitor
    this.#tenant = tenant
    this.#kind = kind
    if (channels.scopeStart.hasSubscribers) channels.scopeStart.publish(this.#base())
  }

  #base(): ScopeMessage {
    const { input } = this.#tenant
    return { scopeId: this.scopeId, tenant: input === '' ? undefined : input, kind: this.#kind }
  }

  /** Passes `sent` through, publishing its outcome when someone listens. */
  query<R extends { rowCount?: number | null }>(text: string, sent: Promise<R>, wasSent: boolean): Promise<R> {
    const settled = this.queryStarted(text, wasSent)
    if (settled === undefined) return sent
    return sent.then(
      (result) => {
        settled(false, result)
        return result
      },
      (error: unknown) => {
        settled(true, error)
        throw error
      },
    )
  }

  /**
   * A statement is being sent: returns what to call when it settles, or undefined when nobody
   * listens (the hot path then allocates nothing).
   */
  queryStarted(text: string, wasSent: boolean): QuerySettled | undefined {
    if (!channels.query.hasSubscribers) return undefined
    const started = performance.now()
    return (failed, outcome) => {
      if (!channels.query.hasSubscribers) return
      const message: QueryMessage = {
        ...this.#base(),
        pid: this.pid,
        text,
        durationMs: performance.now() - started,
        outcome: failed ? 'error' : 'ok',
        sent: wasSent,
        ...(failed ? { error: outcome } : { rowCount: (outcome as { rowCount?: number | null } | undefined)?.rowCount }),
      }
      channels.query.publish(message)
    }
  }

  /** Whether anyone subscribes to a channel: subscribers run in the caller's async context. */
  listening(): boolean {
    return (
      channels.query.hasSubscribers ||
      channels.scopeEnd.hasSubscribers ||
      channels.release.hasSubscribers ||
      channels.destroy.hasSubscribers
    )
  }

  /** Whether this scope's client is checked before release (the pool's sample rate). */
  shouldVerify(): boolean {
    return this.#monitor !== undefined && this.#monitor.sample()
  }

  /** The names the canary reads for this scope: the tenant's, and every name the pool writes. */
  checkedSettings(poolNames: readonly string[] = []): string[] {
    return settingsToCheck(this.#tenant, [...(this.#monitor?.setting === undefined ? [] : [this.#monitor.setting]), ...poolNames])
  }

  /** The canary statement for `names`. */
  releaseCheck(names: readonly string[]): QueryConfigLike {
    return releaseCheck(names)
  }

  /** Counts and publishes what became of the scope's client; call just before `release`. */
  returned(verdict: ReleaseVerdict, checked: boolean): void {
    this.#monitor?.count(verdict, checked)
    if (verdict.release) {
      if (channels.release.hasSubscribers) {
        const message: ReleaseMessage = { ...this.#base(), pid: this.pid, verified: verdict.verified }
        channels.release.publish(message)
      }
      return
    }
    if (channels.destroy.hasSubscribers) {
      const message: DestroyMessage = {
        ...this.#base(),
        pid: this.pid,
        reason: verdict.reason,
        ...(verdict.dirty === undefined ? {} : { dirty: verdict.dirty }),
        ...(verdict.error === undefined ? {} : { error: verdict.error }),
      }
      channels.destroy.publish(message)
    }
  }

  /** Publishes the scope's end. `error`: what the caller receives, if anything. */
  ended(failed: boolean, error: unknown): void {
    if (!channels.scopeEnd.hasSubscribers) return
    const message: ScopeEndMessage = {
      ...this.#base(),
      pid: this.pid,
      durationMs: performance.now() - this.#startedAt,
      outcome: failed || error !== undefined ? 'error' : 'ok',
      ...(error === undefined ? {} : { error }),
    }
    channels.scopeEnd.publish(message)
  }
}
