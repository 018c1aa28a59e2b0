# Stand-in for the published image nginx:1.30, built from Debian 12's nginx
# where no image registry is reachable (tests/containers/run.sh builds it only
# when no image of that name exists).  Same contract as the published one:
# /etc/nginx/nginx.conf, logs to the container's output, graceful SIGQUIT.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
