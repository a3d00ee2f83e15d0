#!/bin/sh
# Seed the shared model repository with the image's built-in models, once.
#
#   seed-model-repository            # LOMAR_SEED_REPOSITORY (/models in the images) -> LOMAR_MODEL_REPOSITORY
#
# Copies only when the repository holds no model yet (no NAME/config.pbtxt), so a repository that deploys and
# exports have changed is never overwritten, and a fresh volume's lost+found does not count as content.
# Run by the one-shot `seed-repository` service of docker-compose.yml and the init container of the Triton
# Deployment in deploy/kubernetes/.
set -eu

seed="${LOMAR_SEED_REPOSITORY:?LOMAR_SEED_REPOSITORY: the built-in models to copy}"
repository="${LOMAR_MODEL_REPOSITORY:?LOMAR_MODEL_REPOSITORY: the shared model repository}"

for config in "$repository"/*/config.pbtxt; do
    if [ -e "$config" ]; then
        echo "seed-model-repository: $repository already holds models; left as it is"
        exit 0
    fi
done

mkdir -p "$repository"
# Plain -R (not -a): the copies belong to the user running this, who must be able to rewrite config.pbtxt later.
cp -R "$seed"/. "$repository"/
echo "seed-model-repository: copied the built-in models from $seed to $repository"
