module github.com/marsmesh/marsmesh

go 1.26.0
