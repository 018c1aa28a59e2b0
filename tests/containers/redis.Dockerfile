# Stand-in for the published image redis:7-bookworm, built from Debian 12's
# own Redis 7 where no image registry is reachable (tests/containers/run.sh
# builds it only when no image of that name exists).  What docker-compose.yml
# relies on is the same: redis-server and redis-cli on PATH, data in /data, and
# protected mode off (the published image patches it off: clients come from
# other containers).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server redis-tools \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data
WORKDIR /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["redis-server"]
