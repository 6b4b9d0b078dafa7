package logtest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

func TestRecorder(t *testing.T) {
	t.Parallel()
	var r Recorder
	child := r.With("component", "c")
	grandchild := child.With("id", 7)
	r.Info("msg", "root")
	child.Debug("msg", "child")
	grandchild.Info("msg", "grandchild", "err", fmt.Errorf("boom"))
	grandchild.Info("odd")

	want := []string{"msg=root", "component=c msg=child", "component=c id=7 msg=grandchild err=boom", "component=c id=7 odd"}
	if have := r.Text(); !slices.Equal(have, want) {
		t.Errorf("Text(): have %q, want %q", have, want)
	}
	if have := child.(*Recorder).Text("id=7", "err=boom"); !slices.Equal(have, want[2:3]) {
		t.Errorf("Text(id=7, err=boom) of a child: have %q, want %q", have, want[2:3])
	}
	if have := r.Lines(); len(have) != 4 || !slices.Equal(have[1], []any{"component", "c", "msg", "child"}) {
		t.Errorf("Lines(): have %v, want 4 lines, the second [component c msg child]", have)
	}
}

func TestConcurrent(t *testing.T) {
	t.Parallel()
	var r Recorder
	var b Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.With("g", i).Info("msg", "x")
			fmt.Fprintf(&b, "line %d\n", i)
		}()
	}
	wg.Wait()
	if n := len(r.Lines()); n != 8 {
		t.Errorf("Recorder kept %d lines, want 8", n)
	}
	if n := len(b.String()); n != 8*len("line 0\n") {
		t.Errorf("Buffer holds %d bytes, want %d", n, 8*len("line 0\n"))
	}
}
