package main

func (b *bench) suiteLossy() {}
