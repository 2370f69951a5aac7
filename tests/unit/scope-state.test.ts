/**
 * The scope state machine (src/scope/state.ts), transition by transition and decision by decision,
 * without a database: what each kind of scope refuses, what each statement carries, how each scope
 * ends, and when its client may go back to the pool. The integration tests check the same against
 * a real PostgreSQL; these pin every branch.
 */
import { describe, expect, it } from 'vitest'
import { InvalidQueryError, ScopeClosedError, TransactionAbortedError } from '../../src/errors.js'
import { analyzeSql } from '../../src/scope/sql-shape.js'
import { ScopeState, TRANSITIONS, type Phase, type ScopeKind, type StatementSource } from '../../src/scope/state.js'

const st = (text: string) => ({ text, values: [] })
const BEGIN = st('BEGIN')
const APPLY = st('APPLY LOCAL')
const SESSION = st('APPLY SESSION')
const RESET = st('RESET')
const PREPARED = st('PREPARED APPLY')
const AFTER = st('AFTER STATEMENT')
const source = (hasTenant = true): StatementSource => ({
  begin: BEGIN,
  applyLocal: () => (hasTenant ? [APPLY] : []),
  applySession: () => (hasTenant ? [SESSION] : []),
  singleTrip: () => ({ prefix: hasTenant ? [PREPARED] : [], suffix: [AFTER] }),
  reset: () => RESET,
})
const texts = (plan: { head: readonly { text: string }[]; prefix: readonly { text: string }[]; suffix: readonly { text: string }[] }) => ({
  head: plan.head.map((s) => s.text),
  prefix: plan.prefix.map((s) => s.text),
  suffix: plan.suffix.map((s) => s.text),
})
const one = analyzeSql('select 1')
const several = analyzeSql('select 1; select 2')
const KINDS: ScopeKind[] = ['single', 'transaction', 'session', 'client']
const PHASES = Object.keys(TRANSITIONS) as Phase[]

/** A state in `phase`, reached by allowed moves. */
function inPhase(kind: ScopeKind, phase: Phase): ScopeState {
  const paths: Record<Phase, Phase[]> = {
    idle: [],
    acquiring: ['acquiring'],
    open: ['acquiring', 'open'],
    ending: ['acquiring', 'open', 'ending'],
    released: ['acquiring', 'open', 'ending', 'released'],
    destroyed: ['acquiring', 'open', 'ending', 'destroyed'],
    closed: ['closed'],
  }
  const state = new ScopeState(kind)
  for (const next of paths[phase]) state.to(next)
  return state
}

describe('phases', () => {
  for (const from of PHASES) {
    for (const to of PHASES) {
      const allowed = TRANSITIONS[from].includes(to)
      it(`${from} → ${to} is ${allowed ? 'allowed' : 'a bug, and throws'}`, () => {
        const state = inPhase('transaction', from)
        if (allowed) {
          state.to(to)
          expect(state.phase).toBe(to)
        } else {
          expect(() => state.to(to)).toThrow(`cannot go from ${from} to ${to}`)
          expect(state.phase).toBe(from)
        }
      })
    }
  }

  it('terminal phases go nowhere', () => {
    expect(TRANSITIONS.released).toEqual([])
    expect(TRANSITIONS.destroyed).toEqual([])
    expect(TRANSITIONS.closed).toEqual([])
  })
})

describe('what the server said', () => {
  it('an idle status ends a client transaction: its tenant is no longer applied', () => {
    const state = new ScopeState('client')
    state.answered('T')
    state.plan(one, source())
    expect(state.applied).toBe(true)
    state.answered('I')
    expect(state.applied).toBe(false)
    expect(state.ended).toBe(false)
  })

  it('an idle status in a transaction scope that sent BEGIN means its transaction ended behind its back', () => {
    const state = new ScopeState('transaction')
    state.answered('I')
    expect(state.ended).toBe(false) // nothing began yet
    state.plan(one, source())
    state.answered('T')
    expect(state.ended).toBe(false)
    state.answered('I')
    expect(state.ended).toBe(true)
    expect(state.refusal(false)).toBeInstanceOf(ScopeClosedError)
    expect(state.guard()).toBeInstanceOf(ScopeClosedError)
  })

  it('the idle status of its own COMMIT does not mark a closing transaction scope as ended', () => {
    const state = new ScopeState('transaction')
    state.plan(one, source())
    state.closing = true
    state.answered('I')
    expect(state.ended).toBe(false)
  })

  it('a failed apply is kept (refusing everything) but by a client, which tries again', () => {
    const err = new Error('role refused')
    const scope = new ScopeState('transaction')
    scope.applyFailed(err, scope.stickyApply)
    expect(scope.refusal(false)).toBe(err)
    expect(scope.guard()).toBe(err)
    const client = new ScopeState('client')
    client.answered('T')
    client.plan(one, source())
    client.applyFailed(err, client.stickyApply)
    expect(client.refusal(false)).toBeUndefined()
    expect(client.applied).toBe(false)
  })

  it('refuses statements issued after closing began, but runs those issued before', () => {
    const state = new ScopeState('transaction')
    state.closing = true
    expect(state.refusal(true)).toBeInstanceOf(ScopeClosedError)
    expect(state.refusal(false)).toBeUndefined()
  })
})

describe('transaction control each kind refuses', () => {
  const cases: Array<[string, Record<ScopeKind, boolean>]> = [
    ['BEGIN', { single: true, transaction: true, session: false, client: false }],
    ['COMMIT', { single: true, transaction: true, session: false, client: false }],
    ['ROLLBACK', { single: true, transaction: true, session: false, client: false }],
    ['COMMIT AND CHAIN', { single: true, transaction: true, session: false, client: true }],
    ["PREPARE TRANSACTION 'x'", { single: true, transaction: true, session: true, client: true }],
    ['SET TRANSACTION READ ONLY', { single: true, transaction: false, session: false, client: false }],
    ['SAVEPOINT a', { single: true, transaction: false, session: false, client: false }],
    ['select 1; commit', { single: true, transaction: true, session: false, client: true }],
    ['select 1; savepoint a', { single: true, transaction: false, session: false, client: false }],
    ['select 1', { single: false, transaction: false, session: false, client: false }],
  ]
  for (const [text, refused] of cases) {
    for (const kind of KINDS) {
      it(`${kind} ${refused[kind] ? 'refuses' : 'lets through'} ${JSON.stringify(text)}`, () => {
        const error = new ScopeState(kind).refuseControl(analyzeSql(text))
        if (refused[kind]) expect(error).toBeInstanceOf(InvalidQueryError)
        else expect(error).toBeUndefined()
      })
    }
  }
})

describe('plans', () => {
  it('transaction: BEGIN and the tenant ride with the first statement, nothing with the next', () => {
    const state = new ScopeState('transaction')
    expect(texts(state.plan(one, source()))).toEqual({ head: [], prefix: ['BEGIN', 'APPLY LOCAL'], suffix: [] })
    expect(texts(state.plan(one, source()))).toEqual({ head: [], prefix: [], suffix: [] })
    expect(state.began && state.applied).toBe(true)
  })

  it('transaction: SET TRANSACTION first takes BEGIN alone; the tenant rides with the next', () => {
    const state = new ScopeState('transaction')
    expect(texts(state.plan(analyzeSql('set transaction isolation level serializable'), source()))).toEqual({
      head: [],
      prefix: ['BEGIN'],
      suffix: [],
    })
    expect(texts(state.plan(one, source()))).toEqual({ head: [], prefix: ['APPLY LOCAL'], suffix: [] })
  })

  it('transaction: several statements first send BEGIN and the tenant alone', () => {
    const state = new ScopeState('transaction')
    expect(texts(state.plan(several, source()))).toEqual({ head: ['BEGIN', 'APPLY LOCAL'], prefix: [], suffix: [] })
  })

  it('transaction with nothing to apply (withoutTenant): BEGIN only', () => {
    expect(texts(new ScopeState('transaction').plan(one, source(false)))).toEqual({ head: [], prefix: ['BEGIN'], suffix: [] })
  })

  it('session: the session apply goes alone first, once', () => {
    const state = new ScopeState('session')
    expect(texts(state.plan(one, source()))).toEqual({ head: ['APPLY SESSION'], prefix: [], suffix: [] })
    expect(texts(state.plan(analyzeSql('BEGIN'), source()))).toEqual({ head: [], prefix: [], suffix: [] })
  })

  it('client, idle: a statement is a single trip; transaction control goes as it is', () => {
    const state = new ScopeState('client')
    expect(texts(state.plan(one, source()))).toEqual({ head: [], prefix: ['PREPARED APPLY'], suffix: ['AFTER STATEMENT'] })
    for (const text of ['BEGIN', 'START TRANSACTION READ ONLY', 'COMMIT', 'ROLLBACK', 'SET TRANSACTION READ ONLY', 'SAVEPOINT a']) {
      expect(texts(state.plan(analyzeSql(text), source()))).toEqual({ head: [], prefix: [], suffix: [] })
    }
    expect(state.applied).toBe(false)
  })

  it("client, in the caller's transaction: the tenant rides with the first statement after SET TRANSACTION", () => {
    const state = new ScopeState('client')
    state.answered('T')
    for (const text of ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', 'BEGIN', 'ROLLBACK']) {
      expect(texts(state.plan(analyzeSql(text), source()))).toEqual({ head: [], prefix: [], suffix: [] })
    }
    expect(texts(state.plan(analyzeSql('savepoint a'), source()))).toEqual({ head: [], prefix: ['APPLY LOCAL'], suffix: [] })
    expect(texts(state.plan(one, source()))).toEqual({ head: [], prefix: [], suffix: [] })
  })

  it('client: COMMIT carries the reset, in a transaction and in an aborted one', () => {
    const state = new ScopeState('client')
    state.answered('T')
    expect(texts(state.plan(analyzeSql('commit'), source()))).toEqual({ head: [], prefix: [], suffix: ['RESET'] })
    state.answered('E')
    expect(texts(state.plan(analyzeSql('end'), source()))).toEqual({ head: [], prefix: [], suffix: ['RESET'] })
  })

  it('client, aborted transaction: nothing rides (the server refuses until ROLLBACK)', () => {
    const state = new ScopeState('client')
    state.answered('E')
    expect(texts(state.plan(one, source()))).toEqual({ head: [], prefix: [], suffix: [] })
  })

  it('several statements alone: a lone query always, a client only in autocommit', () => {
    expect(new ScopeState('single').runsSeveralAlone(several)).toBe(true)
    expect(new ScopeState('single').runsSeveralAlone(one)).toBe(false)
    const client = new ScopeState('client')
    expect(client.runsSeveralAlone(several)).toBe(true)
    client.answered('T')
    expect(client.runsSeveralAlone(several)).toBe(false)
    expect(new ScopeState('transaction').runsSeveralAlone(several)).toBe(false)
  })
})

describe('submittables (cursors)', () => {
  it('a lone cursor and a transaction scope open the transaction with the tenant', () => {
    for (const kind of ['single', 'transaction'] as const) {
      expect(new ScopeState(kind).planSubmittable(source()).map((s) => s.text)).toEqual(['BEGIN', 'APPLY LOCAL'])
    }
  })

  it('a client in autocommit opens a transaction for its cursor and ends it when the cursor is done', () => {
    const state = new ScopeState('client')
    expect(state.planSubmittable(source()).map((s) => s.text)).toEqual(['BEGIN', 'APPLY LOCAL'])
    state.answered('T')
    expect(state.ownTransactionEnd()).toBe('commit')
    expect(state.cursorTransactionDone()).toBe(true)
    expect(state.cursorTransactionDone()).toBe(false)
  })

  it("a client in the caller's transaction applies the tenant once and leaves the transaction to the caller", () => {
    const state = new ScopeState('client')
    state.answered('T')
    expect(state.planSubmittable(source()).map((s) => s.text)).toEqual(['APPLY LOCAL'])
    expect(state.planSubmittable(source())).toEqual([])
    expect(state.cursorTransactionDone()).toBe(false)
  })

  it('a session scope applies the session state first', () => {
    expect(new ScopeState('session').planSubmittable(source()).map((s) => s.text)).toEqual(['APPLY SESSION'])
  })
})

describe("ending a transaction the scope opened for the caller's autocommit work", () => {
  it.each([
    ['T', 'commit'],
    ['E', 'rollback'],
    ['I', 'nothing'],
  ] as const)('status %s: %s', (status, end) => {
    const state = new ScopeState('single')
    state.answered(status)
    expect(state.ownTransactionEnd()).toBe(end)
  })

  it('nothing on a connection that cannot be trusted', () => {
    const broken = new ScopeState('single')
    broken.answered('T')
    broken.sawBroken()
    expect(broken.ownTransactionEnd()).toBe('nothing')
    const unanswered = new ScopeState('single')
    unanswered.answered('T')
    unanswered.sawUnanswered()
    expect(unanswered.ownTransactionEnd()).toBe('nothing')
  })
})

describe('resending a refused prepared statement', () => {
  const refused = { preparedRefused: true, suffixFailed: false }
  it('only when nothing ran, on a clean idle connection', () => {
    expect(new ScopeState('single').canResend(refused)).toBe(true)
    expect(new ScopeState('single').canResend({ preparedRefused: false, suffixFailed: false })).toBe(false)
    expect(new ScopeState('single').canResend({ preparedRefused: true, suffixFailed: true })).toBe(false)
    const inTransaction = new ScopeState('client')
    inTransaction.answered('T')
    expect(inTransaction.canResend(refused)).toBe(false)
    const broken = new ScopeState('single')
    broken.sawBroken()
    expect(broken.canResend(refused)).toBe(false)
  })
})

describe('endings', () => {
  const begun = (kind: ScopeKind, status: 'T' | 'E' = 'T') => {
    const state = new ScopeState(kind)
    state.plan(one, source())
    state.answered(status)
    return state
  }

  it('transaction: COMMIT when intact, ROLLBACK when the callback threw', () => {
    expect(begun('transaction').ending(false)).toEqual({ send: 'commit' })
    expect(begun('transaction').ending(true)).toEqual({ send: 'rollback' })
  })

  it('transaction: an aborted transaction whose callback returned rolls back and says so', () => {
    const ending = begun('transaction', 'E').ending(false)
    expect(ending).toMatchObject({ send: 'rollback', error: expect.any(TransactionAbortedError) })
    expect(begun('transaction', 'E').ending(true)).toEqual({ send: 'rollback' })
  })

  it('transaction: a tenant that could not be applied rolls back with that error', () => {
    const state = begun('transaction')
    const err = new Error('role refused')
    state.applyFailed(err, true)
    expect(state.ending(false)).toEqual({ send: 'rollback', error: err })
  })

  it('transaction: nothing to end when nothing began, or the transaction already ended', () => {
    expect(new ScopeState('transaction').ending(false)).toEqual({ send: 'nothing' })
    const ended = begun('transaction')
    ended.answered('I')
    expect(ended.ending(false)).toEqual({ send: 'nothing' })
  })

  it('transaction: a lost connection before COMMIT is abandoned, and the caller told it did not commit', () => {
    const broken = begun('transaction')
    broken.sawBroken()
    expect(broken.ending(false)).toMatchObject({ send: 'abandon', error: expect.any(TransactionAbortedError) })
    const unanswered = begun('transaction')
    unanswered.sawUnanswered()
    expect(unanswered.ending(false)).toMatchObject({ send: 'abandon', error: expect.any(TransactionAbortedError) })
  })

  it('session: the session reset', () => {
    expect(new ScopeState('session').ending(false)).toEqual({ send: 'session-reset' })
  })

  it('client: nothing when idle, ROLLBACK of a transaction left open, abandon when asked to destroy', () => {
    expect(new ScopeState('client').ending(false)).toEqual({ send: 'nothing' })
    const open = new ScopeState('client')
    open.answered('T')
    expect(open.ending(false)).toEqual({ send: 'rollback' })
    const requested = new ScopeState('client')
    requested.destroyRequested = true
    expect(requested.ending(true)).toEqual({ send: 'abandon' })
  })

  it('a cursor still holding the connection is abandoned', () => {
    const state = new ScopeState('single')
    state.streaming = true
    expect(state.ending(false)).toEqual({ send: 'abandon' })
  })
})

describe('the release decision', () => {
  it('releases only a confirmed, idle, healthy client', () => {
    expect(new ScopeState('single').verdict(true)).toEqual({ release: true, verified: false })
  })

  it.each([
    ['requested', (s: ScopeState): void => void (s.destroyRequested = true)],
    ['broken', (s: ScopeState): void => s.sawBroken()],
    ['unanswered', (s: ScopeState): void => s.sawUnanswered()],
    ['not-idle', (s: ScopeState): void => s.answered('T')],
  ] as const)('destroys: %s', (reason, make) => {
    const state = new ScopeState('client')
    make(state)
    expect(state.verdict(true)).toEqual({ release: false, reason })
  })

  it('destroys an unconfirmed client even when all else looks clean', () => {
    expect(new ScopeState('transaction').verdict(false)).toEqual({ release: false, reason: 'unconfirmed' })
  })

  it('names the first reason when there are several', () => {
    const state = new ScopeState('client')
    state.answered('T')
    state.sawUnanswered()
    state.sawBroken()
    expect(state.verdict(true)).toEqual({ release: false, reason: 'broken' })
    state.destroyRequested = true
    expect(state.verdict(true)).toEqual({ release: false, reason: 'requested' })
  })
})
