/**
 * The lexer that tells pg-tenant how many statements a text holds and which of them are
 * transaction control: what a scope refuses before anything reaches the server.
 */
import { describe, expect, it } from 'vitest'
import { analyzeSql } from '../../src/scope/sql-shape.js'

describe('analyzeSql', () => {
  it.each([
    ['select 1', undefined],
    ['BEGIN', 'begin'],
    ['begin work', 'begin'],
    ['BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE', 'begin'],
    ['start transaction', 'begin'],
    ['START TRANSACTION ISOLATION LEVEL REPEATABLE READ;', 'begin'],
    ['commit', 'commit'],
    ['COMMIT WORK', 'commit'],
    ['end transaction', 'commit'],
    ['commit and no chain', 'commit'],
    ['rollback', 'rollback'],
    ['ABORT', 'rollback'],
    ['rollback transaction and no chain', 'rollback'],
    ['COMMIT AND CHAIN', 'chain'],
    ['end work and chain', 'chain'],
    ['rollback and chain', 'chain'],
    ['abort and chain', 'chain'],
    ["prepare transaction 'x'", 'prepare'],
    ["commit prepared 'x'", undefined],
    ["rollback prepared 'x'", undefined],
    ['set transaction isolation level serializable', 'set-transaction'],
    ['set session characteristics as transaction read only', undefined],
    ['set local statement_timeout = 5', undefined],
    ['savepoint a', 'savepoint'],
    ['release savepoint a', 'savepoint'],
    ['release a', 'savepoint'],
    ['rollback to savepoint a', 'savepoint'],
    ['ROLLBACK WORK TO a', 'savepoint'],
    ['prepare q as select 1', undefined],
    ['/* BEGIN */ select 1', undefined],
    ['-- commit\nselect 1', undefined],
    ['/* outer /* nested */ still a comment */ commit', 'commit'],
    ['"begin"', undefined],
    ['begin_x', undefined],
  ])('%j is %s', (text, control) => {
    expect(analyzeSql(text)).toEqual({ several: false, controls: [control] })
  })

  it.each([
    ['commit; begin', ['commit', 'begin']],
    ['select 1; select 2', [undefined, undefined]],
    ["insert into t values ('a;b'); commit", [undefined, 'commit']],
    ['select $$ ; commit $$; select 2', [undefined, undefined]],
    ['select $tag$ ; $$ ; $tag$; end', [undefined, 'commit']],
    ["select E'\\'; commit'", [undefined]], // an escaped quote: all one string
    ["select E'\\\\'; commit", [undefined, 'commit']], // an escaped backslash, then the quote ends it
    ["select 'it''s; commit'", [undefined]],
    ['select 1;;', [undefined]],
    ['select 1; -- commit', [undefined]],
  ])('%j holds %j', (text, controls) => {
    expect(analyzeSql(text)).toEqual({ several: controls.length > 1, controls })
  })

  it('reads a SQL-standard function body (BEGIN ATOMIC ... END) as part of its CREATE', () => {
    const body = 'create function f() returns int language sql begin atomic select 1; select case when true then 2 end; end'
    expect(analyzeSql(body)).toEqual({ several: false, controls: [undefined] })
    expect(analyzeSql(`${body}; commit`)).toEqual({ several: true, controls: [undefined, 'commit'] })
  })

  it('counts an unterminated dollar quote as several statements, which takes the safe path', () => {
    expect(analyzeSql('select $$ ; commit').several).toBe(true)
  })
})
