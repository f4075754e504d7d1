package memcache

import "testing"

func TestAppendForward(t *testing.T) {
	cases := []struct{ in, want string }{
		{"get a b\r\n", "get a b\r\n"},
		{"get a\n", "get a\n"},
		{"set k 0 0 2 noreply\r\nhi\r\n", "set k 0 0 2\r\nhi\r\n"},
		{"set  k 0 0 2   noreply\nhi\r\n", "set k 0 0 2\r\nhi\r\n"},
		{"cas k 0 0 1 5 noreply\r\nx\r\n", "cas k 0 0 1 5\r\nx\r\n"},
		{"delete k 0 noreply\r\n", "delete k 0\r\n"},
		{"incr k 1 noreply\r\n", "incr k 1\r\n"},
		{"flush_all noreply\r\n", "flush_all\r\n"},
		{"mg k q v\r\n", "mg k q v\r\nmn\r\n"},
		{"mg k v q Oq1 q\r\n", "mg k v q Oq1 q\r\nmn\r\n"},
		{"mg q q\r\n", "mg q q\r\nmn\r\n"},
		{"ms k 1 q T0\r\nq\r\n", "ms k 1 q T0\r\nq\r\nmn\r\n"},
		{"md k q\r\n", "md k q\r\nmn\r\n"},
		{"incr zz 1 noreply\x00\r\n", "incr zz 1\r\n"},
		{"incr zz 1 noreply\x00junk\r\n", "incr zz 1\r\n"},
		{"set k\x10 0 0 1 noreply\r\r\nx\r\n", "set k\x10 0 0 1 noreply\r\r\nx\r\n"},
		{"touch \x10k 1 noreply\n", "touch \x10k 1\r\n"},
	}
	p := NewParser(Limits{})
	var req Request
	for _, c := range cases {
		if _, err := p.Parse([]byte(c.in), &req); err != nil {
			t.Fatalf("Parse(%q): %v", c.in, err)
		}
		if got := req.AppendForward([]byte("pre:")); string(got) != "pre:"+c.want {
			t.Errorf("AppendForward(%q) = %q; want %q", c.in, got, "pre:"+c.want)
		}
	}
}

func TestAppendMultiGet(t *testing.T) {
	cases := []struct {
		in   string
		idx  []int
		want string
	}{
		{"get a b c\r\n", []int{2, 0}, "get c a\r\n"},
		{"gets a b c\n", []int{1}, "gets b\r\n"},
		{"gat 30 a b c\r\n", []int{0, 2}, "gat 30 a c\r\n"},
		{"gats -1 a b\r\n", []int{1}, "gats -1 b\r\n"},
	}
	p := NewParser(Limits{})
	var req Request
	for _, c := range cases {
		if _, err := p.Parse([]byte(c.in), &req); err != nil {
			t.Fatalf("Parse(%q): %v", c.in, err)
		}
		if got := req.AppendMultiGet(nil, c.idx); string(got) != c.want {
			t.Errorf("AppendMultiGet(%q, %v) = %q; want %q", c.in, c.idx, got, c.want)
		}
	}
}

func TestHashKey(t *testing.T) {
	p := NewParser(Limits{})
	var req Request
	cases := []struct{ in, want string }{
		{"mg Zm9vYmFy b v\r\n", "foobar"},
		{"mg Zm9vYmFy v\r\n", "Zm9vYmFy"},
		{"get a bb\r\n", "a"},
	}
	for _, c := range cases {
		if _, err := p.Parse([]byte(c.in), &req); err != nil {
			t.Fatalf("Parse(%q): %v", c.in, err)
		}
		if got := req.HashKey(0, make([]byte, 0, 8)); string(got) != c.want {
			t.Errorf("HashKey(%q) = %q; want %q", c.in, got, c.want)
		}
	}
}
