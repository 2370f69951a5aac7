/**
 * The per-tenant connection quota (`maxPerTenant`): a gate every scope passes BEFORE it asks the
 * pool for a connection, so that an operation waiting for its tenant's quota holds no connection,
 * and the connections one tenant cannot take stay free for the others.
 *
 * Each tenant has a lane: how many slots it holds, and its own first-come-first-served queue. A
 * slot freed goes straight to the next waiter of the same tenant (the count never dips, so no
 * newcomer can overtake the queue). A lane with nothing held and nobody waiting is dropped: the
 * gate's memory follows the tenants active now, not every tenant ever seen.
 *
 * The gate counts; the scope (scope.ts) takes a slot before its checkout and leaves it when its
 * client goes back to the pool or is destroyed, or when the checkout failed.
 */
import { TenantQuotaError } from '../errors.js'
import type { TenantQuotaStats, TenantUsage } from '../observe/diagnostics.js'
import type { ParsedQuota } from '../options.js'
import type { ResolvedTenant, Tenant } from '../tenant.js'

/**
 * A slot of a tenant's quota, held by one scope. `leave()` gives it back; calls after the first
 * do nothing, so every exit path may call it.
 *
 * @example
 * ```ts
 * gate.enter(tenant, (refused, slot) => {
 *   if (refused === undefined) slot!.leave()
 * })
 * ```
 */
export interface GateSlot {
  leave(): void
}

/** Called once: with a slot, or with the refusal when the wait was bounded and ran out. */
export type Entered = (refused: TenantQuotaError | undefined, slot?: GateSlot) => void

// How many tenants db.stats() lists.
const BUSIEST = 10

class Lane {
  readonly key: string
  readonly tenant: Tenant | undefined
  held = 0
  waiting = 0
  // FIFO: `queue[head]` is next. A waiter that gave up stays in place, marked, and is skipped.
  queue: Waiter[] = []
  head = 0

  constructor(key: string, tenant: Tenant | undefined) {
    this.key = key
    this.tenant = tenant
  }
}

class Waiter {
  readonly entered: Entered
  timer: ReturnType<typeof setTimeout> | undefined
  done = false

  constructor(entered: Entered) {
    this.entered = entered
  }
}

class Slot implements GateSlot {
  readonly #lane: Lane
  readonly #free: (lane: Lane) => void
  #left = false

  constructor(lane: Lane, free: (lane: Lane) => void) {
    this.#lane = lane
    this.#free = free
  }

  leave(): void {
    if (this.#left) return
    this.#left = true
    this.#free(this.#lane)
  }
}

/**
 * Counts the connections each tenant holds and queues what is over its quota. One per TenantPool,
 * made only when `maxPerTenant` is set.
 *
 * @example
 * ```ts
 * const gate = new TenantGate({ connections: 2, maxWaitMs: undefined, maxWaiting: undefined }, 'app.tenant_id')
 * gate.enter(resolveTenant('org_42', rules), (refused, slot) => {
 *   // refused: a TenantQuotaError (bounded waits only); else check out, and slot.leave() after
 * })
 * ```
 */
export class TenantGate {
  readonly #quota: ParsedQuota
  readonly #setting: string
  readonly #lanes = new Map<string, Lane>()
  #held = 0
  #waiting = 0
  #refused = 0

  /** `setting`: the pool's tenant setting, whose value is a tenant's id. */
  constructor(quota: ParsedQuota, setting: string) {
    this.#quota = quota
    this.#setting = setting.toLowerCase()
  }

  /**
   * Takes a slot of `tenant`'s quota for one scope. `entered` is called once: at once when the
   * tenant is under its quota (or a bound refuses it), later when a slot of its is freed for it
   * or its wait runs out.
   */
  enter(tenant: ResolvedTenant, entered: Entered): void {
    const lane = this.#laneOf(tenant)
    const { connections, maxWaitMs, maxWaiting } = this.#quota
    if (lane.held < connections) {
      lane.held++
      this.#held++
      entered(undefined, new Slot(lane, this.#free))
      return
    }
    if (maxWaiting !== undefined && lane.waiting >= maxWaiting) {
      this.#refused++
      this.#dropIfIdle(lane)
      entered(new TenantQuotaError('queue-full', connections, maxWaiting))
      return
    }
    const waiter = new Waiter(entered)
    lane.queue.push(waiter)
    lane.waiting++
    this.#waiting++
    if (maxWaitMs !== undefined) waiter.timer = setTimeout(() => this.#giveUp(lane, waiter, maxWaitMs), maxWaitMs)
  }

  /** A slot of `lane` was left: it passes to the tenant's next waiter, or back to the quota. */
  readonly #free = (lane: Lane): void => {
    for (;;) {
      const waiter = lane.queue[lane.head]
      if (waiter === undefined) break
      lane.queue[lane.head++] = undefined as never
      if (waiter.done) continue
      waiter.done = true
      if (waiter.timer !== undefined) clearTimeout(waiter.timer)
      lane.waiting--
      this.#waiting--
      this.#compact(lane)
      // The slot changes hands: the lane's count stays as it is.
      waiter.entered(undefined, new Slot(lane, this.#free))
      return
    }
    lane.held--
    this.#held--
    this.#compact(lane)
    this.#dropIfIdle(lane)
  }

  /** Connections held and operations waiting, and the busiest tenants. */
  stats(): TenantQuotaStats {
    const busiest: TenantUsage[] = []
    for (const lane of this.#lanes.values()) {
      busiest.push({ tenant: lane.tenant, held: lane.held, waiting: lane.waiting })
    }
    busiest.sort((a, b) => b.held + b.waiting - (a.held + a.waiting) || b.held - a.held)
    return {
      maxPerTenant: this.#quota.connections,
      held: this.#held,
      waiting: this.#waiting,
      refused: this.#refused,
      busiest: busiest.slice(0, BUSIEST),
    }
  }

  #giveUp(lane: Lane, waiter: Waiter, waitedMs: number): void {
    if (waiter.done) return
    waiter.done = true
    lane.waiting--
    this.#waiting--
    this.#refused++
    this.#dropIfIdle(lane)
    waiter.entered(new TenantQuotaError('timeout', this.#quota.connections, waitedMs))
  }

  #laneOf(tenant: ResolvedTenant): Lane {
    const identity = (tenant.memo.quota ??= this.#identify(tenant))
    let lane = this.#lanes.get(identity.key)
    if (lane === undefined) {
      lane = new Lane(identity.key, identity.tenant)
      this.#lanes.set(identity.key, lane)
    }
    return lane
  }

  /**
   * Who the quota counts a tenant as: its id (the pool's setting) and its role, so that extra
   * settings (a user id) do not make another tenant; by its settings when it has neither.
   */
  #identify(tenant: ResolvedTenant): { key: string; tenant: Tenant | undefined } {
    const id = tenant.settings.find(([name]) => name.toLowerCase() === this.#setting)?.[1]
    const role = tenant.role
    if (id !== undefined || role !== undefined) {
      const who: Tenant = role === undefined ? id! : id === undefined ? { role } : { id, role }
      return { key: JSON.stringify(['tenant', role ?? null, id ?? null]), tenant: who }
    }
    if (tenant.settings.length === 0) return { key: '["none"]', tenant: undefined }
    return { key: JSON.stringify(['settings', tenant.settings]), tenant: { settings: Object.fromEntries(tenant.settings) } }
  }

  #dropIfIdle(lane: Lane): void {
    if (lane.held === 0 && lane.waiting === 0 && this.#lanes.get(lane.key) === lane) this.#lanes.delete(lane.key)
  }

  /** Drops the queue's served head once it is empty, or once it is most of the array. */
  #compact(lane: Lane): void {
    if (lane.head === lane.queue.length) {
      lane.queue = []
      lane.head = 0
    } else if (lane.head > 64 && lane.head * 2 > lane.queue.length) {
      lane.queue = lane.queue.slice(lane.head)
      lane.head = 0
    }
  }
}
