/**
 * The per-tenant quota's gate on its own: who gets a slot, in what order, what is counted, and that
 * every way out (a slot left twice, a wait that runs out, a full queue) keeps the counts exact.
 * tests/integration/tenant-quota.test.ts checks the same against PostgreSQL's own view.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { TenantQuotaError } from '../../src/errors.js'
import type { ParsedQuota } from '../../src/options.js'
import { NO_TENANT } from '../../src/scope/scope.js'
import { TenantGate, type GateSlot } from '../../src/scope/tenant-gate.js'
import { resolveTenant, type Tenant } from '../../src/tenant.js'

const rules = { setting: 'app.tenant_id', roles: ['reader'], maxValueLength: 256 }
const t = (tenant: Tenant) => resolveTenant(tenant, rules)
const quota = (connections: number, bounds: Partial<ParsedQuota> = {}): ParsedQuota => ({
  connections,
  maxWaitMs: undefined,
  maxWaiting: undefined,
  ...bounds,
})

/** Enters and records what happened: the slot, the refusal, or still waiting. */
function enter(gate: TenantGate, tenant: Tenant) {
  const entry: { slot?: GateSlot; refused?: TenantQuotaError; calls: number } = { calls: 0 }
  gate.enter(t(tenant), (refused, slot) => {
    entry.calls++
    entry.refused = refused
    entry.slot = slot
  })
  return entry
}

afterEach(() => {
  vi.useRealTimers()
})

describe('TenantGate', () => {
  it('lets a tenant hold its quota, queues the rest first come first served, and never holds back another tenant', () => {
    const gate = new TenantGate(quota(2), 'app.tenant_id')
    const a1 = enter(gate, 'org_a')
    const a2 = enter(gate, 'org_a')
    const waiting = [enter(gate, 'org_a'), enter(gate, 'org_a'), enter(gate, 'org_a')]
    expect(a1.slot).toBeDefined()
    expect(a2.slot).toBeDefined()
    expect(waiting.map((w) => w.calls)).toEqual([0, 0, 0])
    // Another tenant is under its own quota: it enters at once.
    const b = enter(gate, 'org_b')
    expect(b.slot).toBeDefined()
    expect(gate.stats()).toMatchObject({ maxPerTenant: 2, held: 3, waiting: 3, refused: 0 })

    // Each slot left goes to the oldest waiter of the same tenant, and the count stays at 2.
    a2.slot!.leave()
    expect(waiting.map((w) => w.calls)).toEqual([1, 0, 0])
    a1.slot!.leave()
    expect(waiting.map((w) => w.calls)).toEqual([1, 1, 0])
    expect(gate.stats().busiest).toEqual([
      { tenant: 'org_a', held: 2, waiting: 1 },
      { tenant: 'org_b', held: 1, waiting: 0 },
    ])
    // A slot left again changes nothing: it was given back once.
    a1.slot!.leave()
    expect(waiting.map((w) => w.calls)).toEqual([1, 1, 0])
    expect(gate.stats()).toMatchObject({ held: 3, waiting: 1 })

    // org_b leaving frees nothing for org_a: quotas are per tenant.
    b.slot!.leave()
    expect(waiting[2]!.calls).toBe(0)
    for (const w of waiting) w.slot?.leave()
    expect(waiting[2]!.calls).toBe(1)
    waiting[2]!.slot!.leave()
    // Nothing held, nobody waiting: no tenant is remembered.
    expect(gate.stats()).toEqual({ maxPerTenant: 2, held: 0, waiting: 0, refused: 0, busiest: [] })
  })

  it('counts a tenant by its id and role: extra settings do not make another tenant', () => {
    const gate = new TenantGate(quota(1), 'app.tenant_id')
    expect(enter(gate, 'org_a').slot).toBeDefined()
    // Same id, another user setting: the same tenant, so it waits.
    expect(enter(gate, { id: 'org_a', settings: { 'app.user_id': 'u_1' } }).calls).toBe(0)
    // The id given as the pool's setting, in another case: still org_a.
    expect(enter(gate, { settings: { 'App.Tenant_Id': 'org_a' } }).calls).toBe(0)
    // A role makes another tenant; so does a role alone, and settings alone, and no tenant at all.
    expect(enter(gate, { id: 'org_a', role: 'reader' }).slot).toBeDefined()
    expect(enter(gate, { role: 'reader' }).slot).toBeDefined()
    expect(enter(gate, { settings: { 'app.user_id': 'u_1' } }).slot).toBeDefined()
    const none: { slot?: GateSlot } = {}
    gate.enter(NO_TENANT, (_refused, slot) => (none.slot = slot))
    expect(none.slot).toBeDefined()
    expect(gate.stats().busiest).toEqual([
      { tenant: 'org_a', held: 1, waiting: 2 },
      { tenant: { id: 'org_a', role: 'reader' }, held: 1, waiting: 0 },
      { tenant: { role: 'reader' }, held: 1, waiting: 0 },
      { tenant: { settings: { 'app.user_id': 'u_1' } }, held: 1, waiting: 0 },
      { tenant: undefined, held: 1, waiting: 0 },
    ])
  })

  it('lists at most the 10 busiest tenants, busiest first', () => {
    const gate = new TenantGate(quota(1), 'app.tenant_id')
    for (let i = 0; i < 15; i++) {
      for (let j = 0; j <= i % 4; j++) enter(gate, `org_${i}`)
    }
    const { busiest, held, waiting } = gate.stats()
    expect(held).toBe(15)
    expect(waiting).toBe([...Array(15).keys()].reduce((sum, i) => sum + (i % 4), 0))
    expect(busiest).toHaveLength(10)
    const loads = busiest.map((u) => u.held + u.waiting)
    expect(loads).toEqual([...loads].sort((x, y) => y - x))
    expect(loads[0]).toBe(4)
  })

  it('refuses at once past maxWaiting, and counts the refusal', () => {
    const gate = new TenantGate(quota(1, { maxWaiting: 1 }), 'app.tenant_id')
    const held = enter(gate, 'org_a')
    const queued = enter(gate, 'org_a')
    const refused = enter(gate, 'org_a')
    expect(queued.calls).toBe(0)
    expect(refused.calls).toBe(1)
    expect(refused.refused).toBeInstanceOf(TenantQuotaError)
    expect(refused.refused).toMatchObject({ code: 'TENANT_QUOTA_EXCEEDED', reason: 'queue-full', connections: 1, status: 429 })
    expect(refused.slot).toBeUndefined()
    expect(gate.stats()).toMatchObject({ held: 1, waiting: 1, refused: 1 })
    held.slot!.leave()
    expect(queued.slot).toBeDefined()

    // maxWaiting 0: a tenant at its quota is refused at once, and leaves nothing behind.
    const strict = new TenantGate(quota(1, { maxWaiting: 0 }), 'app.tenant_id')
    const only = enter(strict, 'org_b')
    expect(enter(strict, 'org_b').refused?.reason).toBe('queue-full')
    only.slot!.leave()
    expect(strict.stats()).toEqual({ maxPerTenant: 1, held: 0, waiting: 0, refused: 1, busiest: [] })
  })

  it('gives up a wait after maxWaitMs: the waiter is refused, skipped, and the quota stays exact', () => {
    vi.useFakeTimers()
    const gate = new TenantGate(quota(1, { maxWaitMs: 100 }), 'app.tenant_id')
    const held = enter(gate, 'org_a')
    const first = enter(gate, 'org_a')
    vi.advanceTimersByTime(50)
    const second = enter(gate, 'org_a')
    vi.advanceTimersByTime(50) // first has waited 100 ms, second 50
    expect(first.calls).toBe(1)
    expect(first.refused).toMatchObject({ reason: 'timeout', connections: 1 })
    expect(first.refused?.message).toMatch(/waited 100 ms/)
    expect(second.calls).toBe(0)
    expect(gate.stats()).toMatchObject({ held: 1, waiting: 1, refused: 1 })
    // The slot goes past the one that gave up, to the next, whose timer stops.
    held.slot!.leave()
    expect(second.slot).toBeDefined()
    vi.advanceTimersByTime(1000)
    expect(second.calls).toBe(1)
    expect(first.calls).toBe(1)
    second.slot!.leave()
    expect(gate.stats()).toEqual({ maxPerTenant: 1, held: 0, waiting: 0, refused: 1, busiest: [] })
  })

  it('keeps FIFO order and exact counts through a long queue', () => {
    const gate = new TenantGate(quota(3), 'app.tenant_id')
    const order: number[] = []
    const slots: GateSlot[] = []
    for (let i = 0; i < 500; i++) {
      gate.enter(t('org_a'), (_refused, slot) => {
        order.push(i)
        slots.push(slot!)
      })
    }
    expect(order).toEqual([0, 1, 2])
    for (let done = 0; done < 500; done++) {
      slots[done]!.leave()
      expect(gate.stats().held).toBe(Math.min(3, 500 - done - 1))
    }
    expect(order).toEqual([...Array(500).keys()])
    expect(gate.stats()).toMatchObject({ held: 0, waiting: 0, busiest: [] })
  })
})
