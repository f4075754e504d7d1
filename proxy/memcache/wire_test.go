package memcache

import (
	"errors"
	"testing"
)

func TestSafeStrto(t *testing.T) {
	cases := []struct {
		in    string
		l     int32
		lok   bool
		ul    uint32
		ulok  bool
		ull   uint64
		ullok bool
	}{
		{"0", 0, true, 0, true, 0, true},
		{"12", 12, true, 12, true, 12, true},
		{"+7", 7, true, 7, true, 7, true},
		{"-1", -1, true, 0, false, 0, false},
		{"-0", 0, true, 0, true, 0, true},
		{"\t5", 5, true, 5, true, 5, true},
		{"5\t", 5, true, 5, true, 5, true},
		{"5\tjunk", 5, true, 5, true, 5, true},
		{"5x", 0, false, 0, false, 0, false},
		{"", 0, false, 0, false, 0, false},
		{"-", 0, false, 0, false, 0, false},
		{"x", 0, false, 0, false, 0, false},
		{"4294967297", 1, true, 1, true, 4294967297, true},
		{"99999999999", 1215752191, true, 1215752191, true, 99999999999, true},
		{"9223372036854775807", -1, true, 4294967295, true, 9223372036854775807, true},
		{"9223372036854775808", 0, false, 0, true, 9223372036854775808, true},
		{"18446744073709551615", 0, false, 4294967295, true, 18446744073709551615, true},
		{"18446744073709551616", 0, false, 0, false, 0, false},
		{"-9223372036854775808", 0, true, 0, false, 0, false},
		{"-18446744073709551615", 0, false, 1, true, 1, true},
	}
	for _, c := range cases {
		l, lok := safeStrtol([]byte(c.in))
		ul, ulok := safeStrtoul([]byte(c.in))
		ull, ullok := safeStrtoull([]byte(c.in))
		if lok != c.lok || (lok && l != c.l) {
			t.Errorf("safeStrtol(%q) = %d, %v; want %d, %v", c.in, l, lok, c.l, c.lok)
		}
		if ulok != c.ulok || (ulok && ul != c.ul) {
			t.Errorf("safeStrtoul(%q) = %d, %v; want %d, %v", c.in, ul, ulok, c.ul, c.ulok)
		}
		if ullok != c.ullok || (ullok && ull != c.ull) {
			t.Errorf("safeStrtoull(%q) = %d, %v; want %d, %v", c.in, ull, ullok, c.ull, c.ullok)
		}
	}
}

func TestParseQuietReply(t *testing.T) {
	cases := []struct {
		in     string
		cmd    Command
		n      int
		status Status
		body   int
		err    bool
	}{
		{"MN\r\n", CmdMetaGet, 4, StatusMN, 0, false},
		{"MN\r\nEN\r\n", CmdMetaGet, 4, StatusMN, 0, false},
		{"EN\r\nMN\r\n", CmdMetaGet, 8, StatusEN, 4, false},
		{"VA 1 t\r\nx\r\nMN\r\n", CmdMetaGet, 15, StatusVA, 11, false},
		{"VA 1 t\r\nx\r\n", CmdMetaGet, 0, StatusNone, 0, false},
		{"HD\r\nMN", CmdMetaSet, 0, StatusNone, 0, false},
		{"CLIENT_ERROR bad data chunk\r\nMN\r\n", CmdMetaSet, 33, StatusClientError, 29, false},
		{"HD\r\nHD\r\n", CmdMetaDelete, 0, StatusNone, 0, true},
		{"STORED\r\nMN\r\n", CmdMetaSet, 0, StatusNone, 0, true},
		{"M", CmdMetaSet, 0, StatusNone, 0, false},
	}
	for _, c := range cases {
		n, rep, err := ParseQuietReply([]byte(c.in), c.cmd)
		if c.err {
			if !errors.Is(err, ErrMalformedReply) {
				t.Errorf("ParseQuietReply(%q) err = %v; want ErrMalformedReply", c.in, err)
			}
			continue
		}
		if err != nil || n != c.n || rep.Status != c.status || rep.Body != c.body {
			t.Errorf("ParseQuietReply(%q) = %d, %+v, %v; want %d %v body %d", c.in, n, rep, err, c.n, c.status, c.body)
		}
	}
}

// TestReplyTypeMustAnswerCommand: a reply whose type cannot answer the
// request is malformed (the connection is then closed by the proxy), never
// delivered.
func TestReplyTypeMustAnswerCommand(t *testing.T) {
	cases := []struct {
		in  string
		cmd Command
	}{
		{"VALUE k 0 1\r\nx\r\nEND\r\n", CmdDecr},
		{"VALUE k 0 1\r\nx\r\nEND\r\n", CmdIncr},
		{"STORED\r\n", CmdGet},
		{"STORED\r\n", CmdIncr},
		{"42\r\n", CmdSet},
		{"42\r\n", CmdGet},
		{"DELETED\r\n", CmdTouch},
		{"TOUCHED\r\n", CmdDelete},
		{"END\r\n", CmdDecr},
		{"HD\r\n", CmdSet},
		{"EN\r\n", CmdMetaSet},
		{"NS\r\n", CmdMetaDelete},
		{"MN\r\n", CmdMetaGet},
		{"ERRORS\r\n", CmdSet},
		{"SERVER_ERRORx\r\n", CmdSet},
		{"VALUE k 0 1\r\nx\r\nERROR\r\n", CmdGet},
		{"OK\r\n", CmdAdd},
		{"VERSION 1\r\n", CmdGet},
	}
	for _, c := range cases {
		if _, _, err := ParseReply([]byte(c.in), c.cmd); !errors.Is(err, ErrMalformedReply) {
			t.Errorf("ParseReply(%q, %v) err = %v; want ErrMalformedReply", c.in, c.cmd, err)
		}
	}
}
