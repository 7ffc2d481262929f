" Vim syntax file
" Language:    Fly (Polar Gosling configuration language)
" Filenames:   *.fly

if exists('b:current_syntax')
  finish
endif

let s:cpo_save = &cpo
set cpo&vim

syn case match

" Comments: #, // and /* */ (not nested).
syn keyword flyTodo contained TODO FIXME XXX NOTE
syn match   flyComment "#.*$" contains=flyTodo,@Spell
syn match   flyComment "//.*$" contains=flyTodo,@Spell
syn region  flyComment start="/\*" end="\*/" contains=flyTodo,@Spell

" Block types: a name followed by quoted labels and `{` on the same line.
syn keyword flyBlockType egg job uglyfox vars cloud resources runner gitlab environment
      \ on_failure pruning apex nadir policies rule nextgroup=flyLabel skipwhite
syn match   flyBlockName "\<\h\w*\ze\%(\s*\"\%([^\"\\]\|\\.\)*\"\)*\s*{" contains=flyBlockType
syn region  flyLabel contained start=+"+ skip=+\\.+ end=+"+ oneline contains=flyEscape,flyBadEscape nextgroup=flyLabel skipwhite

" Attribute names and map keys before `=`.
syn match   flyAttribute "\<\h\w*\ze\s*=\%(=\)\@!"
syn match   flyOperator "="

syn keyword flyBoolean true false

" Numbers: 42, -7, 0.5, 1.5e3, 2E-4; malformed ones (10m, 1_000, 1.) are errors.
syn match   flyInvalidNumber "\<\d[A-Za-z0-9_.]*"
syn match   flyNumber "-\?\s*\<\d\+\%(\.\d\+\)\=\%([eE][+-]\=\d\+\)\=\>\ze\%([^A-Za-z0-9_.]\|$\)"

" Strings, escapes and ${ … } interpolation.
syn match   flyBadEscape contained "\\."
syn match   flyEscape contained +\\\%([nrt"\\]\|u\x\{4}\|U\x\{8}\)+
syn match   flyInterpEscape contained "\$\${"
syn region  flyInterpolation contained matchgroup=flyInterpDelim start="\${" end="}" end=+\ze"+ end="$" oneline contains=flyInterpRoot,flyInterpDot
syn match   flyInterpRoot contained "\%(\${\s*\)\@<=\<\%(vars\|env\)\>"
syn match   flyInterpDot contained "\."
syn region  flyString start=+"+ skip=+\\.+ end=+"+ end="$" oneline contains=flyEscape,flyBadEscape,flyInterpEscape,flyInterpolation,@Spell

" Heredocs: <<EOT or <<-EOT up to a line holding only the marker.
syn region  flyHeredoc matchgroup=flyHeredocDelim start="<<-\=\z(\h\w*\)\s*$" end="^\s*\z1$" contains=flyInterpEscape,flyInterpolation

syn match   flyBrace "[{}\[\]]"
syn match   flyComma ","

hi def link flyTodo          Todo
hi def link flyComment       Comment
hi def link flyBlockType     Keyword
hi def link flyBlockName     Type
hi def link flyLabel         String
hi def link flyAttribute     Identifier
hi def link flyOperator      Operator
hi def link flyBoolean       Boolean
hi def link flyNumber        Number
hi def link flyInvalidNumber Error
hi def link flyString        String
hi def link flyEscape        SpecialChar
hi def link flyBadEscape     Error
hi def link flyInterpEscape  SpecialChar
hi def link flyInterpDelim   Delimiter
hi def link flyInterpolation Special
hi def link flyInterpRoot    Constant
hi def link flyInterpDot     Delimiter
hi def link flyHeredoc       String
hi def link flyHeredocDelim  Delimiter
hi def link flyBrace         Delimiter
hi def link flyComma         Delimiter

let b:current_syntax = 'fly'

let &cpo = s:cpo_save
unlet s:cpo_save
