# Two binaries in one small image: mars-server (the MARS registry) and
# marsmesh-node (cmd/node: run, status, healthcheck, version).
#
#   docker build -t marsmesh .
#   docker run --rm marsmesh mars-server -version
#
# Build from a git clone to get the VCS revision into -version (the build
# stage runs git; without .git the revision reads "unknown").

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=auto -ldflags="-s -w" -o /out/mars-server ./cmd/mars-server \
 && CGO_ENABLED=0 go build -trimpath -buildvcs=auto -ldflags="-s -w" -o /out/marsmesh-node ./cmd/node

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mars-server /out/marsmesh-node /usr/local/bin/
USER nonroot:nonroot
# MARS: 6789/udp; a node: 8000/udp (its mesh port); admin endpoints: 9090/tcp.
EXPOSE 6789/udp 8000/udp 9090/tcp
ENTRYPOINT []
CMD ["mars-server", "-help"]
