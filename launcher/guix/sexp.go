package guix

import (
	"fmt"
	"strings"
)

// node is a parsed Scheme datum: a list, a string literal or an atom.
type node struct {
	list   []*node
	isList bool
	str    string // string literal (unescaped)
	isStr  bool
	atom   string // symbol, number, 'quoted symbol...
	line   int
}

// parseSexps reads the data of a Scheme source file. It understands what
// configuration files use: lists, strings, comments (; and #| |#, #;),
// quote/quasiquote/unquote prefixes and atoms. It never evaluates anything.
func parseSexps(src string) ([]*node, error) {
	p := &sexpParser{src: src, line: 1}
	var out []*node
	for {
		p.skip()
		if p.pos >= len(p.src) {
			return out, nil
		}
		n, err := p.datum()
		if err != nil {
			return nil, err
		}
		if n != nil {
			out = append(out, n)
		}
	}
}

type sexpParser struct {
	src  string
	pos  int
	line int
}

func (p *sexpParser) skip() {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '\n':
			p.line++
			p.pos++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f':
			p.pos++
		case c == ';':
			for p.pos < len(p.src) && p.src[p.pos] != '\n' {
				p.pos++
			}
		case strings.HasPrefix(p.src[p.pos:], "#|"):
			end := strings.Index(p.src[p.pos+2:], "|#")
			if end < 0 {
				p.pos = len(p.src)
				return
			}
			p.line += strings.Count(p.src[p.pos:p.pos+2+end], "\n")
			p.pos += end + 4
		default:
			return
		}
	}
}

func (p *sexpParser) datum() (*node, error) {
	p.skip()
	if p.pos >= len(p.src) {
		return nil, fmt.Errorf("line %d: unexpected end of file (missing closing parenthesis?)", p.line)
	}
	c := p.src[p.pos]
	line := p.line
	switch {
	case c == '(' || c == '[':
		closer := byte(')')
		if c == '[' {
			closer = ']'
		}
		p.pos++
		n := &node{isList: true, line: line}
		for {
			p.skip()
			if p.pos >= len(p.src) {
				return nil, fmt.Errorf("line %d: list opened here is never closed (missing closing parenthesis)", line)
			}
			if p.src[p.pos] == closer {
				p.pos++
				return n, nil
			}
			if p.src[p.pos] == ')' || p.src[p.pos] == ']' {
				return nil, fmt.Errorf("line %d: mismatched closing bracket", p.line)
			}
			el, err := p.datum()
			if err != nil {
				return nil, err
			}
			if el != nil {
				n.list = append(n.list, el)
			}
		}
	case c == ')' || c == ']':
		return nil, fmt.Errorf("line %d: unexpected closing parenthesis", line)
	case c == '"':
		p.pos++
		var b strings.Builder
		for p.pos < len(p.src) {
			ch := p.src[p.pos]
			if ch == '\\' && p.pos+1 < len(p.src) {
				next := p.src[p.pos+1]
				switch next {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				default:
					b.WriteByte(next)
				}
				p.pos += 2
				continue
			}
			if ch == '"' {
				p.pos++
				return &node{isStr: true, str: b.String(), line: line}, nil
			}
			if ch == '\n' {
				p.line++
			}
			b.WriteByte(ch)
			p.pos++
		}
		return nil, fmt.Errorf("line %d: string never closed", line)
	case c == '\'' || c == '`' || c == ',':
		p.pos++
		if p.pos < len(p.src) && p.src[p.pos] == '@' {
			p.pos++
		}
		return p.datum()
	case strings.HasPrefix(p.src[p.pos:], "#;"):
		p.pos += 2
		_, err := p.datum() // datum comment: parse and drop
		return nil, err
	default:
		start := p.pos
		for p.pos < len(p.src) && !strings.ContainsRune(" \t\r\n\f()[]\";", rune(p.src[p.pos])) {
			p.pos++
		}
		return &node{atom: p.src[start:p.pos], line: line}, nil
	}
}

// head is the symbol a list starts with ("" otherwise).
func (n *node) head() string {
	if !n.isList || len(n.list) == 0 {
		return ""
	}
	return n.list[0].atom
}

// walk calls fn for n and every datum inside it.
func (n *node) walk(fn func(*node)) {
	fn(n)
	for _, c := range n.list {
		c.walk(fn)
	}
}
