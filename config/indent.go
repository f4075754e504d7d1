package config

import (
	"fmt"
	"strings"
)

// misindentedServers finds "- " items of a servers: list that are indented
// unlike the list's first item, and returns a Problem naming each one's own
// line. The YAML parser reports these badly: an item indented deeper than
// the one before it silently joins that item's text ("127.0.0.1:11211:1 -
// 127.0.0.1:11212:1", reported at the first item's line), and one indented
// less fails as "did not find expected key" at the line of the enclosing
// mapping, often line 1. Only servers: blocks are scanned; other lists are
// left to the YAML parser.
func misindentedServers(file string, data []byte) []Problem {
	lines := strings.Split(string(data), "\n")
	var probs []Problem
	for i := 0; i < len(lines); i++ {
		keyIndent, ok := blockKey(lines[i], "servers")
		if !ok {
			continue
		}
		pool := enclosingPool(lines, i, keyIndent)
		itemIndent := -1 // the first item's indentation
		prevPlain := false
	scan:
		for j := i + 1; j < len(lines); j++ {
			text, ind := content(lines[j])
			if text == "" {
				continue // blank or comment
			}
			item := text == "-" || strings.HasPrefix(text, "- ")
			if itemIndent < 0 {
				if !item {
					break // not a block list (a flow list, or no items)
				}
				itemIndent = ind
				if ind < keyIndent {
					probs = append(probs, Problem{File: file, Line: j + 1, Pool: pool, Key: "servers",
						Reason: fmt.Sprintf("list item indented %s, less than servers: (%s): indent the items at least as far as servers:", spaces(ind), spaces(keyIndent))})
					break
				}
				prevPlain = plainItem(text)
				continue
			}
			switch {
			case item && ind == itemIndent:
				prevPlain = plainItem(text)
				continue
			case item && ind > itemIndent && prevPlain:
				probs = append(probs, Problem{File: file, Line: j + 1, Pool: pool, Key: "servers",
					Reason: fmt.Sprintf("list item indented %s where the first item has %s: YAML reads it as more text of the item above; indent every item alike", spaces(ind), spaces(itemIndent))})
				prevPlain = false
				continue
			case item && ind < itemIndent && ind >= keyIndent:
				probs = append(probs, Problem{File: file, Line: j + 1, Pool: pool, Key: "servers",
					Reason: fmt.Sprintf("list item indented %s where the first item has %s: indent every item alike", spaces(ind), spaces(itemIndent))})
				continue
			case ind > itemIndent:
				prevPlain = false
				continue // the inside of an item (a native server map)
			}
			break scan // the list has ended
		}
	}
	return probs
}

// content returns line without its indentation and trailing comment-only
// text, and its indentation in spaces. A blank or comment line gives "".
func content(line string) (string, int) {
	t := strings.TrimLeft(line, " ")
	ind := len(line) - len(t)
	t = strings.TrimRight(t, " \t\r")
	if strings.HasPrefix(t, "#") {
		return "", ind
	}
	return t, ind
}

// blockKey reports whether line is "key:" (with nothing after it but a
// comment), and its indentation.
func blockKey(line, key string) (int, bool) {
	t, ind := content(line)
	rest, ok := strings.CutPrefix(t, key+":")
	if !ok {
		return 0, false
	}
	rest = strings.TrimSpace(rest)
	return ind, rest == "" || strings.HasPrefix(rest, "#")
}

// plainItem reports whether a "- " item is a plain string, which a deeper
// line can continue (a server written as "host:port:weight name").
func plainItem(text string) bool {
	v := strings.TrimSpace(strings.TrimPrefix(text, "-"))
	if v == "" || strings.ContainsAny(v[:1], "\"'[{|>&*!") {
		return false
	}
	// "name: x" starts a map, not a string (a server address has no ": ").
	return !strings.Contains(v, ": ") && !strings.HasSuffix(v, ":")
}

// enclosingPool returns the name of the pool the servers: key on line i
// belongs to: the nearest line above it that is a key indented less.
func enclosingPool(lines []string, i, keyIndent int) string {
	for j := i - 1; j >= 0; j-- {
		t, ind := content(lines[j])
		if t == "" || ind >= keyIndent {
			continue
		}
		name, _, ok := strings.Cut(t, ":")
		if !ok {
			return ""
		}
		return strings.Trim(name, `"'`)
	}
	return ""
}

func spaces(n int) string {
	if n == 1 {
		return "1 space"
	}
	return fmt.Sprintf("%d spaces", n)
}
