#!/bin/sh
# One-shot set-up of the local Garage (docker compose --profile local-s3), safe to run again: give the
# node its role, import the key pair of docker/.env, make the bucket, allow the key on it, and let
# Label Studio's pages load images from it (CORS). Uses Garage's admin API v2 and S3 API.
set -eu
api="http://garage:3903/v2"
auth="Authorization: Bearer ${GARAGE_ADMIN_TOKEN}"
post() { curl -sS -H "$auth" -H "Content-Type: application/json" -X POST "$api/$1" --data "$2"; }

layout=$(curl -fsS -H "$auth" "$api/GetClusterLayout")
case "$layout" in
  *'"roles":[]'*)
    node=$(curl -fsS -H "$auth" "$api/GetClusterStatus" | sed -n 's/.*"id":"\([0-9a-f]\{64\}\)".*/\1/p' | head -n 1)
    version=$(printf '%s' "$layout" | sed -n 's/.*"version":\([0-9]*\).*/\1/p' | head -n 1)
    post UpdateClusterLayout "{\"roles\":[{\"id\":\"$node\",\"zone\":\"local\",\"capacity\":1000000000000,\"tags\":[]}]}" >/dev/null
    post ApplyClusterLayout "{\"version\":$((version + 1))}" >/dev/null
    ;;
esac

post ImportKey "{\"accessKeyId\":\"${AWS_ACCESS_KEY_ID}\",\"secretAccessKey\":\"${AWS_SECRET_ACCESS_KEY}\",\"name\":\"customlabels\"}" >/dev/null || true
post CreateBucket "{\"globalAlias\":\"${CUSTOMLABELS_BUCKET}\"}" >/dev/null || true
bucket=$(curl -fsS -H "$auth" "$api/GetBucketInfo?globalAlias=${CUSTOMLABELS_BUCKET}" | sed -n 's/^{"id":"\([0-9a-f]*\)".*/\1/p')
post AllowBucketKey "{\"bucketId\":\"$bucket\",\"accessKeyId\":\"${AWS_ACCESS_KEY_ID}\",\"permissions\":{\"read\":true,\"write\":true,\"owner\":true}}" >/dev/null

cors="<CORSConfiguration><CORSRule><AllowedOrigin>${LABEL_STUDIO_HOST}</AllowedOrigin><AllowedMethod>GET</AllowedMethod><AllowedMethod>HEAD</AllowedMethod><AllowedHeader>*</AllowedHeader></CORSRule></CORSConfiguration>"
curl -fsS --aws-sigv4 "aws:amz:us-east-1:s3" --user "${AWS_ACCESS_KEY_ID}:${AWS_SECRET_ACCESS_KEY}" \
  -X PUT "http://garage:3900/${CUSTOMLABELS_BUCKET}?cors" -H "Content-Type: application/xml" --data "$cors"
echo "garage: bucket ${CUSTOMLABELS_BUCKET} ready"
