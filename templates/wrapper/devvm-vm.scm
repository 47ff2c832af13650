;; devvm-vm.scm: written by devvm before every build from the Vmfile; edits are
;; lost. It is what devvm passes to `guix system vm': it loads the project's
;; operating-system file (unchanged) and extends the record with what devvm
;; needs to boot, reach and share into the VM (docs/dev-vm.md, "Bring your own
;; config"):
;;  - devvm's SSH keys authorized for the Vmfile's ssh.user, a user account for
;;    it when the OS has none of that name, password-less sudo for it;
;;  - OpenSSH (added when missing) on port 22 with public-key login and TCP
;;    forwarding on and dead clients dropped within a minute; the OS's
;;    password settings, keys and users are kept;
;;  - one 9p file system per Vmfile share (the OS's own 9p file systems at
;;    other mount points are kept, and may fail to mount);
;;  - the serial console, and networking when no service provides it;
;;  - the packages of the Vmfile's [guix] manifest, as `guix shell' uses it.
(use-modules (gnu)
             (gnu system)
             (gnu system file-systems)
             (gnu system shadow)
             (gnu services)
             (gnu services base)
             (gnu services shepherd)
             (gnu services ssh)
             (guix gexp)
             (guix packages)
             (guix profiles)
             (guix ui)
             (guix diagnostics)
             (guix i18n)
             (srfi srfi-1)
             (srfi srfi-26)
             (ice-9 match))

(define %devvm-config {{scm .ProjectConfig}})
(define %devvm-user {{scm .User}})
(define %devvm-uid {{.UID}})
(define %devvm-authorized-keys {{scm .AuthorizedKeysFile}})
(define %devvm-host-name {{if .HostName}}{{scm .HostName}}{{else}}#f{{end}})
(define %devvm-packages-file {{if .Packages}}{{scm .Packages}}{{else}}#f{{end}})
;; (tag mount-point read-only?) per Vmfile share.
(define %devvm-shares
  (list{{range .Shares}}
   (list {{scm .Tag}} {{scm .Guest}} {{if .ReadOnly}}#t{{else}}#f{{end}}){{end}}))

(define (devvm-load file modules)
  ;; As guix loads user files: in a fresh user module using MODULES.
  (load* file (make-user-module modules)))

(define %devvm-os
  ;; As `guix system' reads its argument (guix:guix/scripts/system.scm
  ;; %user-module, read-operating-system).
  (let ((os (devvm-load %devvm-config
                        '((gnu system) (gnu services) (gnu system shadow)))))
    (unless (operating-system? os)
      (leave (G_ "~a returns ~s, not an operating-system; [guix] config in \
the Vmfile must name a file whose last expression is an (operating-system …)~%")
             %devvm-config os))
    os))

;;; Packages: what `guix shell' makes of the file
;;; (guix:guix/scripts/environment.scm packages->outputs): a manifest's
;;; entries (-m), or the development inputs of a package, a (package output)
;;; pair or a nested list of them (-D -f).
(define (devvm-entries value)
  (match value
    ((? manifest? m) (manifest-entries m))
    ((? package? p) (manifest-entries (package->development-manifest p)))
    (((? package? p) (? string?))
     (manifest-entries (package->development-manifest p)))
    ((lst ...) (append-map devvm-entries lst))
    (_ (leave (G_ "~a returns ~s: want a manifest, a package or a list of \
packages, as `guix shell -m' or `guix shell -D -f' would~%")
              %devvm-packages-file value))))

(define (devvm-packages os)
  ;; The OS's packages plus the file's entries, minus those that would
  ;; collide in the system profile: check-for-collisions
  ;; (guix:guix/profiles.scm) refuses two items with one name and output
  ;; among all entries and their propagated inputs.
  (define seen (make-hash-table))
  (define (note! entry)
    (hash-set! seen (cons (manifest-entry-name entry)
                          (manifest-entry-output entry))
               (manifest-entry-item entry)))
  (define (clash? entry)
    (let ((item (hash-ref seen (cons (manifest-entry-name entry)
                                     (manifest-entry-output entry)))))
      (and item (not (eq? item (manifest-entry-item entry))))))
  (define (fits? entry)
    (let ((closure (manifest-transitive-entries (manifest (list entry)))))
      (and (not (any clash? closure))
           (not (hash-ref seen (cons (manifest-entry-name entry)
                                     (manifest-entry-output entry))))
           (begin (for-each note! closure) #t))))
  (let ((base (operating-system-packages os)))
    (if (not %devvm-packages-file)
        base
        (begin
          (for-each note!
                    (manifest-transitive-entries (packages->manifest base)))
          (append base
                  (filter-map (lambda (entry)
                                (and (fits? entry)
                                     (list (manifest-entry-item entry)
                                           (manifest-entry-output entry))))
                              (devvm-entries
                               ;; As `guix shell -m' (load-manifest) does;
                               ;; -f uses a subset of these modules.
                               (devvm-load %devvm-packages-file
                                           '((guix profiles) (gnu))))))))))

;;; The user devvm logs in as: the OS's own account of that name, or a new one.
(define (devvm-users os)
  (let ((users (operating-system-users os)))
    (if (any (lambda (u) (string=? (user-account-name u) %devvm-user)) users)
        users
        (append users
                (list (user-account
                       (name %devvm-user)
                       (comment "devvm's login user")
                       ;; The uid of the checkout's owner, unless the OS
                       ;; gives it to someone else.
                       (uid (and (not (any (lambda (u)
                                             (eqv? (user-account-uid u)
                                                   %devvm-uid))
                                           users))
                                 %devvm-uid))
                       (group "users")))))))

(define (devvm-sudoers os)
  ;; The OS's rules plus one for devvm's user: sudo applies the last match.
  (let ((rule (string-append %devvm-user " ALL=(ALL) NOPASSWD: ALL\n"))
        (old (operating-system-sudoers-file os)))
    (if (plain-file? old)
        (plain-file "sudoers" (string-append (plain-file-content old) rule))
        (computed-file "sudoers"
                       #~(begin
                           (use-modules (ice-9 textual-ports))
                           (call-with-output-file #$output
                             (lambda (port)
                               (display (call-with-input-file #$old
                                          get-string-all)
                                        port)
                               (display #$rule port))))))))

;;; File systems: one 9p mount per Vmfile share, replacing an OS file system
;;; at the same mount point; the OS's other 9p mounts may fail (devvm passes
;;; -virtfs only for the Vmfile's shares), so boot and sshd never wait on them.
(define (devvm-share->file-system share)
  (match share
    ((tag mount-point read-only?)
     (file-system
       (mount-point mount-point)
       (device tag)
       (type "9p")
       (flags (if read-only? '(read-only) '()))
       (options "trans=virtio,version=9p2000.L,msize=104857600")
       (check? #f)
       (create-mount-point? #t)
       (mount-may-fail? #t)))))

(define (devvm-file-systems os)
  (let* ((ours (map devvm-share->file-system %devvm-shares))
         (points (map file-system-mount-point ours)))
    (append (filter-map (lambda (fs)
                          (cond ((member (file-system-mount-point fs) points)
                                 #f)
                                ((equal? (file-system-type fs) "9p")
                                 (file-system (inherit fs)
                                              (mount-may-fail? #t)))
                                (else fs)))
                        (operating-system-file-systems os))
            ours)))

;;; The serial console devvm logs (and `devvm console' attaches to).
(define (devvm-kernel-arguments os)
  (let ((args (operating-system-user-kernel-arguments os)))
    (if (any (cut string-prefix? "console=ttyS0" <>) args)
        args
        (append args '("console=ttyS0")))))

;;; Services.
(define (devvm-sshd config)
  (openssh-configuration
   (inherit config)
   ;; devvm forwards a host port to the guest's port 22.
   (port-number 22)
   (public-key-authentication? #t)
   ;; Remote forwards carry ssh-mode shares.
   (allow-tcp-forwarding? #t)
   ;; First, so it wins over the OS's own lines and precedes any Match block.
   (extra-content (string-append
                   "ClientAliveInterval 15\nClientAliveCountMax 4\n"
                   (openssh-configuration-extra-content config)))))

(define (devvm-provides-networking? service)
  ;; Whether one of the Shepherd services it makes provides `networking',
  ;; which sshd requires (guix:gnu/services/ssh.scm).
  (any (lambda (ext)
         (and (eq? (service-extension-target ext) shepherd-root-service-type)
              (false-if-exception
               (any (lambda (s)
                      (memq 'networking (shepherd-service-provision s)))
                    ((service-extension-compute ext)
                     (service-value service))))))
       (service-type-extensions (service-kind service))))

(define (devvm-services os)
  (let* ((services (operating-system-user-services os))
         (services
          (if (any (lambda (s) (eq? (service-kind s) openssh-service-type))
                   services)
              (modify-services services
                (openssh-service-type config => (devvm-sshd config)))
              (cons (service openssh-service-type
                             (devvm-sshd (openssh-configuration
                                          (permit-root-login #f)
                                          (password-authentication? #f))))
                    services))))
    (append services
            ;; Added to the OS's own authorized keys
            ;; (extend-openssh-authorized-keys), never replacing them.
            (list (simple-service 'devvm-authorized-keys openssh-service-type
                                  `((,%devvm-user
                                     ,(local-file {{scm .AuthorizedKeysFile}}
                                                  "devvm-authorized-keys")))))
            (if (any devvm-provides-networking? services)
                '()
                (list (service static-networking-service-type
                               (list %qemu-static-networking)))))))

(operating-system
  (inherit %devvm-os)
  (host-name (or %devvm-host-name (operating-system-host-name %devvm-os)))
  (kernel-arguments (devvm-kernel-arguments %devvm-os))
  (file-systems (devvm-file-systems %devvm-os))
  (users (devvm-users %devvm-os))
  (sudoers-file (devvm-sudoers %devvm-os))
  (packages (devvm-packages %devvm-os))
  (services (devvm-services %devvm-os)))
